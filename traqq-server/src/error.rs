//! The server's error type.

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop the server from starting or running, and client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `[server]` setting is invalid.
    #[error("invalid config: {field}: {reason}")]
    Config {
        /// The setting, e.g. `server.tcp`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A non-loopback address without `auth_token`.
    #[error(
        "refusing to listen on {addr} ({field}) without server.auth_token: anyone who can reach it \
         could write and read metrics; set an auth_token, bind to 127.0.0.1, or pass --insecure"
    )]
    Insecure {
        /// The setting holding the address.
        field: &'static str,
        /// The address.
        addr: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({field}): {error}")]
    Bind {
        /// The setting holding the address.
        field: &'static str,
        /// The address.
        addr: String,
        /// Why (shown in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// Any other I/O failure (client side: connecting, sending, receiving).
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed (shown in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The server answered `{"success":false}`.
    #[error("server error: {0}")]
    Server(String),
    /// The server answered something that is not a traqq reply.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server itself failed: a task it ran panicked or was cancelled (a bug, not a client's
    /// or the store's doing).
    #[error("internal error: {0}")]
    Internal(String),
    /// The store failed (e.g. while flushing at shutdown).
    #[error(transparent)]
    Storage(#[from] traqq_storage::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            error,
        }
    }
}
