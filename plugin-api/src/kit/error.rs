//! The error type plugins return: any error, boxed, shown to the user as one line.

/// Any error a plugin returns; its `Display` text is what the user sees.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the plugin [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
