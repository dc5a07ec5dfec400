//! The one error type of `traqq-storage` and the backends built on it.

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from the engine and from storage backends, grouped by meaning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad config, event, key or query (from `traqq-core`).
    #[error(transparent)]
    Core(#[from] traqq_core::Error),
    /// The store cannot be reached right now (connection refused, timeout); retrying later may
    /// work.
    #[error("{backend} storage is unavailable: {message}")]
    Unavailable {
        /// Backend name, e.g. `redis`.
        backend: &'static str,
        /// What happened.
        message: String,
    },
    /// The store holds data it cannot read back.
    #[error("{backend} storage holds a corrupt value under {key:?}: {message}")]
    Corrupt {
        /// Backend name.
        backend: &'static str,
        /// The key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The store could not be opened (path, lock, incompatible options).
    #[error("cannot open {backend} storage at {path}: {message}")]
    Open {
        /// Backend name.
        backend: &'static str,
        /// Path or URL of the store.
        path: String,
        /// What happened.
        message: String,
    },
    /// Any other backend failure.
    #[error("{backend} storage failed: {message}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What happened.
        message: String,
    },
}

impl Error {
    /// True when the failure is likely temporary (the store is down or unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
