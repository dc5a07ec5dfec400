//! The one error type of `traqq-core`.

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the pure core: bad configuration, bad events, bad keys.
///
/// Every message names the field, pattern or value at fault.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid config: {field}: {reason}")]
    Config {
        /// Dotted path of the offending field, e.g. `mapping.add[2]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The event is not valid JSON, or not a JSON object.
    #[error("invalid event JSON: {0}")]
    Json(String),
    /// The event has no usable `event` name.
    #[error("invalid event: field \"event\" {0}")]
    EventName(&'static str),
    /// The event-time field holds something that is not a timestamp.
    #[error(
        "invalid event time in field \"{field}\": {value} (expected unix seconds or an RFC 3339 timestamp)"
    )]
    EventTime {
        /// Name of the event-time field.
        field: String,
        /// The value found, as JSON text.
        value: String,
    },
    /// The event time is outside years 1..=9999.
    #[error("event time in field \"{field}\" is {value}, outside years 1 to 9999")]
    EventTimeRange {
        /// Name of the event-time field.
        field: String,
        /// The time found, unix seconds.
        value: i64,
    },
    /// The event time is outside the accepted window around now (`[event] max_past_days`,
    /// `max_future_secs`).
    #[error("event time in field \"{field}\" is {value}, {reason}")]
    EventTimeWindow {
        /// Name of the event-time field.
        field: String,
        /// The time found, unix seconds.
        value: i64,
        /// How far off it is, naming the setting.
        reason: String,
    },
    /// The event would produce more metric operations than `limits.max_metrics_per_event`.
    #[error("event produces {count} metric operations, more than limits.max_metrics_per_event = {limit}")]
    TooManyMetrics {
        /// Operations the event would produce.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An `add_value` amount is too large in magnitude for its sums to stay finite.
    #[error(
        "amount in field \"{field}\" is {value}, larger in magnitude than {limit:e} (sums of such amounts could overflow)"
    )]
    AmountTooLarge {
        /// The amount field (`add_key`).
        field: String,
        /// The amount found.
        value: f64,
        /// The largest magnitude accepted.
        limit: f64,
    },
    /// The event's id (`[event] id_field`) is present but not a usable id.
    #[error("invalid event id in field \"{field}\": {reason}")]
    EventId {
        /// Name of the id field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A storage key does not follow the traqq key format.
    #[error("invalid key {key:?}: {reason}")]
    Key {
        /// The key text.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A query is malformed (range, bucket count, filter glob, find selector).
    #[error("invalid query: {0}")]
    Query(String),
    /// A stored sketch could not be decoded.
    #[error("corrupt HyperLogLog sketch: {0}")]
    Sketch(String),
}

impl Error {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
