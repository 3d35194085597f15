//! `bench listing`: how long `host --plugin-dir DIR` takes to list 1 and 100 plugins, with
//! (warm) and without (cold) DIR's `dropin.cache`, against `host --version`, which starts the
//! same binary but looks for no plugin.

use crate::report::{self, Timing};
use crate::scratch::Scratch;
use crate::servers;
use crate::Options;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/fixtures/release/libtraced.so"
);
const BUILD_FIXTURE: &str =
    "cargo build --release --manifest-path tests/fixtures/Cargo.toml --target-dir target/fixtures";
const CACHE_NAME: &str = "dropin.cache";
/// The fixture appends a line to this file whenever it is loaded: a warm listing must load none.
const LOAD_TRACE: &str = "HOST_FIXTURE_LOAD_TRACE";
/// How far back the copies are dated: host re-probes, on every run, a file changed within 2 s
/// of its cache being written, which would make every warm listing cold.
const AGE: Duration = Duration::from_secs(60);
/// Cold listings run every third round only, as they take far longer than the rest.
const COLD_EVERY: usize = 3;
/// A run taking longer is killed and fails the bench, so a hung host cannot hang it.
const PATIENCE: Duration = Duration::from_secs(30);
const GOAL_WARM_RATIO: f64 = 1.5;
const GOAL_COLD_MS: f64 = 1000.0;

/// A plugin directory and the tapnames its listing must show.
#[derive(Clone)]
struct Plugins {
    dir: PathBuf,
    tapnames: Vec<String>,
}

struct Measurement {
    label: String,
    /// `None` for `host --version`.
    plugins: Option<Plugins>,
    /// Whether the cache is deleted before each run.
    cold: bool,
    /// Wall times in ms.
    samples: Vec<f64>,
}

impl Measurement {
    fn new(label: &str, plugins: Option<&Plugins>, cold: bool) -> Self {
        Self {
            label: label.to_owned(),
            plugins: plugins.cloned(),
            cold,
            samples: Vec::new(),
        }
    }

    /// Deletes the cache before a cold run.
    fn prepare(&self) -> Result<(), String> {
        let Some(plugins) = self.plugins.as_ref().filter(|_| self.cold) else {
            return Ok(());
        };
        let cache = plugins.dir.join(CACHE_NAME);
        match std::fs::remove_file(&cache) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", cache.display()))
            }
            _ => Ok(()),
        }
    }
}

/// What every run shares: the binary and where its caches and the load trace go.
struct Runner {
    host: PathBuf,
    user_cache: PathBuf,
    trace: PathBuf,
}

impl Runner {
    fn command(&self, measurement: &Measurement) -> Command {
        let mut command = Command::new(&self.host);
        // Only DIR's own cache may speed a listing up, and only DIR may be added to the path.
        command
            .env("XDG_CACHE_HOME", &self.user_cache)
            .env_remove("HOST_PLUGIN_PATH")
            .stdin(Stdio::null());
        match &measurement.plugins {
            None => command.arg("--version"),
            Some(plugins) if measurement.cold => command.arg("--plugin-dir").arg(&plugins.dir),
            Some(plugins) => command
                .arg("--plugin-dir")
                .arg(&plugins.dir)
                .env(LOAD_TRACE, &self.trace),
        };
        command
    }

    fn describe(&self, measurement: &Measurement) -> String {
        let command = format!("{:?}", self.command(measurement));
        match &measurement.plugins {
            Some(plugins) if measurement.cold => {
                format!("rm {}; {command}", plugins.dir.join(CACHE_NAME).display())
            }
            _ => command,
        }
    }

    /// One unmeasured run, checking that the listing shows every plugin.
    fn check(&self, measurement: &Measurement) -> Result<(), String> {
        measurement.prepare()?;
        let output = self
            .command(measurement)
            .output()
            .map_err(|e| format!("cannot start {}: {e}", self.host.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} exited with {}: {}",
                measurement.label,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let listing = String::from_utf8_lossy(&output.stdout);
        let mut tapnames = measurement.plugins.iter().flat_map(|p| &p.tapnames);
        match tapnames.find(|t| !listing.contains(t.as_str())) {
            Some(missing) => Err(format!("{}: {missing} not listed", measurement.label)),
            None => Ok(()),
        }
    }

    /// The wall time of one run, spawn to exit, in ms.
    fn time(&self, measurement: &Measurement) -> Result<f64, String> {
        measurement.prepare()?;
        let mut command = self.command(measurement);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.host.display()))?;
        let status = wait_within(&mut child, PATIENCE)
            .map_err(|e| format!("cannot wait for {}: {e}", measurement.label))?;
        let elapsed = started.elapsed();
        match status {
            Some(status) if status.success() => Ok(elapsed.as_secs_f64() * 1e3),
            Some(status) => Err(format!("{} exited with {status}", measurement.label)),
            None => Err(format!(
                "{} did not exit within {PATIENCE:?}; killed it",
                measurement.label
            )),
        }
    }
}

pub fn run(options: &Options) -> Result<(), String> {
    let host = servers::locate_host(options.host.as_deref())?;
    let fixture = servers::require_file(
        "libtraced.so",
        options.fixture.clone().unwrap_or_else(|| FIXTURE.into()),
        &format!("run `{BUILD_FIXTURE}` first, or pass --fixture PATH"),
    )?;
    let scratch = Scratch::new("listing")?;
    let runner = Runner {
        host,
        user_cache: scratch.path().join("user-cache"),
        trace: scratch.path().join("warm-loads.trace"),
    };
    let one = copy_plugins(&fixture, &scratch.path().join("plugins-1"), 1)?;
    let hundred = copy_plugins(&fixture, &scratch.path().join("plugins-100"), 100)?;
    let mut measurements = [
        Measurement::new("host --version", None, false),
        Measurement::new("1 plugin, cold", Some(&one), true),
        Measurement::new("1 plugin, warm", Some(&one), false),
        Measurement::new("100 plugins, cold", Some(&hundred), true),
        Measurement::new("100 plugins, warm", Some(&hundred), false),
    ];
    println!(
        "{} rounds ({} of them cold), {} CPUs; fixture {}",
        options.rounds,
        options.rounds.div_ceil(COLD_EVERY),
        std::thread::available_parallelism().map_or(0, usize::from),
        fixture.display()
    );
    for measurement in &measurements {
        println!("{}: {}", measurement.label, runner.describe(measurement));
    }

    // In table order, so each cold run writes the cache the warm run after it reads.
    for measurement in &measurements {
        runner.check(measurement)?;
    }
    // Round-robin, starting one further along each round, so drift in the shared machine's
    // load falls on every measurement alike.
    for round in 0..options.rounds {
        for i in 0..measurements.len() {
            let measurement = &mut measurements[(round + i) % measurements.len()];
            if !measurement.cold || round % COLD_EVERY == 0 {
                let sample = runner.time(measurement)?;
                measurement.samples.push(sample);
            }
        }
    }
    if let Ok(trace) = std::fs::read_to_string(&runner.trace) {
        return Err(format!(
            "warm listings loaded plugin libraries {} times, so they were not warm",
            trace.lines().count()
        ));
    }

    let [version, _, _, cold, warm] = measurements.each_ref().map(|m| report::median(&m.samples));
    println!();
    report::print_timings(&measurements.map(|m| Timing {
        label: m.label,
        samples: m.samples,
    }));
    println!();
    let warm_ratio = warm / version;
    println!(
        "goal: warm listing of 100 plugins within {GOAL_WARM_RATIO}× `host --version`: \
         {warm_ratio:.2}×, {}",
        report::verdict(warm_ratio <= GOAL_WARM_RATIO)
    );
    println!(
        "goal: cold listing of 100 plugins under 1 s: {} ms, {}",
        report::format_value(cold),
        report::verdict(cold < GOAL_COLD_MS)
    );
    Ok(())
}

/// Copies `fixture` into `dir` as `libtraced_001.so` onwards: it takes its tapname from its
/// file name, so each copy is a distinct plugin.
fn copy_plugins(fixture: &Path, dir: &Path, count: usize) -> Result<Plugins, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let past = SystemTime::now() - AGE;
    let tapnames = (1..=count)
        .map(|i| {
            let tapname = format!("traced_{i:03}");
            let path = dir.join(format!("lib{tapname}.so"));
            std::fs::copy(fixture, &path)
                .and_then(|_| File::options().write(true).open(&path)?.set_modified(past))
                .map_err(|e| {
                    format!(
                        "cannot copy {} to {}: {e}",
                        fixture.display(),
                        path.display()
                    )
                })?;
            Ok(tapname)
        })
        .collect::<Result<_, String>>()?;
    Ok(Plugins {
        dir: dir.to_owned(),
        tapnames,
    })
}

/// Waits for `child` to exit, killing it after `limit`; `None` if it had to be killed.
fn wait_within(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    let exited = exits_within(child, limit);
    if !matches!(exited, Ok(true)) {
        let _ = child.kill();
    }
    let status = child.wait()?;
    exited.map(|exited| exited.then_some(status))
}

/// Whether `child`, not yet reaped, exits within `limit`. A pidfd wakes the wait the moment it
/// exits, where polling `try_wait` would round every time up to the polling interval.
fn exits_within(child: &Child, limit: Duration) -> io::Result<bool> {
    // The child is not yet reaped, so its pid cannot belong to another process.
    let pidfd = pidfd_open(Pid::from_child(child), PidfdFlags::empty())?;
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let timeout = Timespec::try_from(limit).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    Ok(poll(&mut fds, Some(&timeout))? > 0)
}
