//! What [`export_service_maker!`](crate::export_service_maker) expands to: the root module, a
//! panic guard around every entry point, and the adapter that runs a [`Service`] on the plugin's
//! own tokio runtime.
//!
//! The guards must live here, inside the plugin: each cdylib has its own copy of std, so a
//! panic that crosses into the host cannot be caught there and aborts the process.

use crate::abi::{
    AbiService, AbiService_TO, HostContext, OptionSpec, OptionValue, PluginInfo, ServiceBox,
    ServiceMaker, ServiceMakerRef, ABOUT, HOST_VERSION, METRICS, RELOAD,
};
use crate::kit::error::Result;
use crate::kit::options::Options;
use crate::kit::scope::ServiceScope;
use crate::kit::service::{Service, Tasks};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString, RVec};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Builds the root module from the two generated entry points.
pub fn root_module(
    info: extern "C" fn() -> RResult<PluginInfo, RString>,
    make_service: extern "C" fn(RVec<OptionValue>, HostContext) -> RResult<ServiceBox, RString>,
) -> ServiceMakerRef {
    ServiceMaker { info, make_service }.leak_into_prefix()
}

/// The body of the generated `info` entry point.
pub fn info(
    tapname: &str,
    description: &str,
    options: fn() -> Vec<OptionSpec>,
) -> RResult<PluginInfo, RString> {
    guard(|| {
        Ok(PluginInfo {
            tapname: tapname.into(),
            description: description.into(),
            options: options().into(),
        })
    })
}

/// The body of the generated `make_service` entry point; `version` is the plugin crate's.
pub fn make_service<S: Service>(
    values: RVec<OptionValue>,
    host: HostContext,
    version: &'static str,
    options: fn() -> Vec<OptionSpec>,
    make: fn(&Options) -> Result<S>,
) -> RResult<ServiceBox, RString> {
    let scope = ServiceScope::new(host.clone());
    scope.enter(|| {
        guard(|| {
            check_host_version(&host, &options())?;
            let service = make(&Options::new(values.into_vec()))?;
            Ok(AbiService_TO::from_value(
                ServiceRunner {
                    service: Box::new(service),
                    host,
                    version,
                    scope: scope.clone(),
                    runtime: None,
                    tasks: None,
                },
                TD_Opaque,
            ))
        })
    })
}

/// Refuses to run in a host too old for the plugin's options: such a host neither validated
/// their values nor enforced required ones, so `make_service` would see unchecked input.
fn check_host_version(host: &HostContext, options: &[OptionSpec]) -> Result<()> {
    let (host_minor, host_version) = match host.call_extension(HOST_VERSION.into(), "".into()) {
        RSome(ROk(version)) => (
            version
                .split('.')
                .nth(1)
                .and_then(|minor| minor.parse::<u32>().ok())
                .unwrap_or(0),
            version.into_string(),
        ),
        // Offered since 1.2: a host without it is 1.0 or 1.1.
        _ => (1, "1.0 or 1.1".to_string()),
    };
    match options.iter().find(|spec| spec.kind.since() > host_minor) {
        Some(spec) => Err(format!(
            "option --{} ({}{}) needs a host built with plugin-api 1.{} or later; this host has plugin-api {host_version}",
            spec.long,
            if spec.kind.is_required() { "required " } else { "" },
            spec.kind.name(),
            spec.kind.since(),
        )
        .into()),
        None => Ok(()),
    }
}

/// Runs `body`, turning its error or panic into the error the host receives.
fn guard<T>(body: impl FnOnce() -> Result<T>) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(error)) => RErr(error.to_string().into()),
        Err(panic) => RErr(format!("panicked: {}", panic_message(&*panic)).into()),
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A [`Service`] behind the frozen [`AbiService`] interface, with the runtime it runs on.
///
/// The runtime is built in `privileged_start`, not in `make_service`, because the host may fork
/// into a daemon between the two and threads do not survive a fork.
struct ServiceRunner {
    service: Box<dyn Service>,
    host: HostContext,
    /// The plugin crate's version, for the host's `/services`.
    version: &'static str,
    /// Every call from the host runs in it, and every thread of the runtime.
    scope: ServiceScope,
    runtime: Option<tokio::runtime::Runtime>,
    tasks: Option<Tasks>,
}

impl ServiceRunner {
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.runtime
            .as_ref()
            .ok_or_else(|| "start called before privileged_start".into())
    }
}

impl AbiService for ServiceRunner {
    fn name(&self) -> RString {
        self.service.name().into()
    }

    fn privileged_start(&mut self) -> RResult<(), RString> {
        let scope = self.scope.clone();
        scope.enter(|| {
            guard(|| {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.enable_all().thread_name(self.service.name());
                self.scope.apply_to(&mut builder);
                let runtime = builder.build()?;
                let _entered = runtime.enter();
                let started = self.service.privileged_start();
                self.runtime = Some(runtime);
                started
            })
        })
    }

    fn start(&mut self) -> RResult<(), RString> {
        let scope = self.scope.clone();
        scope.enter(|| self.start_in_scope())
    }

    fn stop(&mut self, deadline_ms: u64) -> RResult<(), RString> {
        let scope = self.scope.clone();
        scope.enter(|| self.stop_in_scope(deadline_ms))
    }

    fn call_extension(
        &mut self,
        name: RStr<'_>,
        request: RStr<'_>,
    ) -> ROption<RResult<RString, RString>> {
        let scope = self.scope.clone();
        scope.enter(|| self.extension_in_scope(name, request))
    }
}

impl ServiceRunner {
    fn start_in_scope(&mut self) -> RResult<(), RString> {
        guard(|| {
            let _entered = self.runtime()?.enter();
            let host = self.host.clone();
            let tasks = Tasks::root(std::sync::Arc::new(move |error: Option<String>| {
                host.service_ended(ROption::from(error.map(RString::from)))
            }));
            // Kept before starting so that `stop` also cleans up after a failed start.
            self.tasks = Some(tasks.clone());
            self.service.start(&tasks)
        })
    }

    fn stop_in_scope(&mut self, deadline_ms: u64) -> RResult<(), RString> {
        guard(|| {
            let Some(runtime) = self.runtime.take() else {
                return Ok(());
            };
            let deadline = Duration::from_millis(deadline_ms);
            let outcome = match self.tasks.take() {
                Some(tasks) => runtime
                    .block_on(async { tokio::time::timeout(deadline, tasks.stop()).await })
                    .map_err(|_| {
                        let open = match tasks.open_connections() {
                            0 => String::new(),
                            1 => " (1 connection still open, now closed)".to_string(),
                            n => format!(" ({n} connections still open, now closed)"),
                        };
                        format!(
                            "in-flight work did not finish within {deadline:?}; abandoned{open}"
                        )
                        .into()
                    }),
                None => Ok(()),
            };
            // Whatever is still running was given its chance; do not wait for it again.
            runtime.shutdown_background();
            outcome
        })
    }

    fn extension_in_scope(
        &mut self,
        name: RStr<'_>,
        _request: RStr<'_>,
    ) -> ROption<RResult<RString, RString>> {
        match name.as_str() {
            METRICS => RSome(ROk(self.scope.metrics().snapshot().into())),
            ABOUT => {
                let about = serde_json::json!({
                    "plugin_version": self.version,
                    "endpoints": self.scope.endpoints(),
                });
                RSome(ROk(about.to_string().into()))
            }
            RELOAD => {
                if self.runtime.is_none() {
                    return RNone;
                }
                let runtime = self.runtime.as_ref().expect("checked above");
                let _entered = runtime.enter();
                match guard(|| self.service.reload().transpose()) {
                    ROk(None) => RNone,
                    ROk(Some(())) => RSome(ROk(RString::new())),
                    RErr(error) => RSome(RErr(error)),
                }
            }
            _ => RNone,
        }
    }
}

/// Exports a plugin's service maker: the one line that turns a crate into a `host` plugin.
///
/// ```text
/// export_service_maker! {
///     tapname: "fastpoetry",
///     description: "A fast poetry service.",
///     options: options,           // fn() -> Vec<OptionSpec>
///     make_service: make_service, // fn(&Options) -> Result<impl Service>
/// }
/// ```
///
/// It generates the library's root module, catches every panic inside the plugin and returns it
/// to the host as an error, installs the log bridge, and gives the service its own tokio runtime.
/// See the [crate documentation](crate) for a complete plugin.
#[macro_export]
macro_rules! export_service_maker {
    (
        tapname: $tapname:expr,
        description: $description:expr,
        options: $options:path,
        make_service: $make_service:path $(,)?
    ) => {
        const _: () = {
            use $crate::__private::abi_stable as __abi;

            extern "C" fn __info(
            ) -> __abi::std_types::RResult<$crate::abi::PluginInfo, __abi::std_types::RString> {
                $crate::__private::info($tapname, $description, $options)
            }

            extern "C" fn __make_service(
                values: __abi::std_types::RVec<$crate::abi::OptionValue>,
                host: $crate::abi::HostContext,
            ) -> __abi::std_types::RResult<$crate::abi::ServiceBox, __abi::std_types::RString> {
                $crate::__private::make_service(
                    values,
                    host,
                    env!("CARGO_PKG_VERSION"),
                    $options,
                    $make_service,
                )
            }

            fn __root_module() -> $crate::abi::ServiceMakerRef {
                $crate::__private::root_module(__info, __make_service)
            }

            extern "C" fn __load_root_module() -> __abi::library::RootModuleResult {
                __abi::library::__call_root_module_loader(__root_module)
            }

            // What abi_stable's `#[export_root_module]` generates, written out so that plugins
            // need no direct abi_stable dependency; `export_symbol_name` tests the name.
            // SAFETY: the header is built for the ServiceMakerRef this library exports, with
            // layout checking on, which is what `from_constructor` requires of its caller.
            #[allow(unsafe_code)]
            #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
            static __HOST_PLUGIN_HEADER: __abi::library::LibHeader = unsafe {
                __abi::library::LibHeader::from_constructor::<$crate::abi::ServiceMakerRef>(
                    __load_root_module,
                    __abi::library::CheckTypeLayout::Yes,
                )
            };
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_symbol_name() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
