//! The one error type of `traqq-storage` and the backends built on it.

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause of a backend error: the backend's own error (a `redis::RedisError`, an
/// `std::io::Error`, ...), or a message when there is none. A `String` or `&str` converts.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from the engine and from storage backends, grouped by meaning. Each backend variant
/// keeps its cause as [`std::error::Error::source`], so a caller can walk down to the backend's
/// own error (object_store's `Generic { store, source }` is the model).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad config, event, key or query (from `traqq-core`).
    #[error(transparent)]
    Core(#[from] traqq_core::Error),
    /// The store cannot be reached right now (connection refused, timeout); retrying later may
    /// work.
    #[error("{backend} storage is unavailable: {source}")]
    Unavailable {
        /// Backend name, e.g. `redis`.
        backend: &'static str,
        /// What happened.
        source: Source,
    },
    /// The store holds data it cannot read back.
    #[error("{backend} storage holds a corrupt value under {key:?}: {source}")]
    Corrupt {
        /// Backend name.
        backend: &'static str,
        /// The key at fault.
        key: String,
        /// What is wrong.
        source: Source,
    },
    /// The store could not be opened (path, lock, incompatible options).
    #[error("cannot open {backend} storage at {path}: {source}")]
    Open {
        /// Backend name.
        backend: &'static str,
        /// Path or URL of the store.
        path: String,
        /// What happened.
        source: Source,
    },
    /// The store cannot do what was asked (a feature its backend does not implement).
    #[error("this storage backend does not support {what}")]
    Unsupported {
        /// What was asked, naming the setting that asks for it.
        what: &'static str,
    },
    /// A dump (`traqq export` / `traqq restore`) that cannot be written, read or restored here;
    /// the message names the dump's line where one is at fault.
    #[error("{0}")]
    Dump(String),
    /// Any other backend failure.
    #[error("{backend} storage failed: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What happened.
        source: Source,
    },
}

impl Error {
    /// True when the failure is likely temporary (the store is down or unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// [`Error::Unavailable`] caused by `source`.
    pub fn unavailable(backend: &'static str, source: impl Into<Source>) -> Self {
        Error::Unavailable {
            backend,
            source: source.into(),
        }
    }

    /// [`Error::Corrupt`] under `key`, caused by `source`.
    pub fn corrupt(backend: &'static str, key: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::Corrupt {
            backend,
            key: key.into(),
            source: source.into(),
        }
    }

    /// [`Error::Open`] of the store at `path`, caused by `source`.
    pub fn open(backend: &'static str, path: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::Open {
            backend,
            path: path.into(),
            source: source.into(),
        }
    }

    /// [`Error::Backend`] caused by `source`.
    pub fn backend(backend: &'static str, source: impl Into<Source>) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }
}
