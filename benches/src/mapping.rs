//! The standard mapping of DESIGN §8, for this project and for traqq 0.2.
//!
//! bitmap `[ip]`; add `[event, event~offer, event~offer~creative, event~offer~channel,
//! event~geo]`; add_value `[{key: offer~event, add_key: amount}]`; top `[geo, offer,
//! geo~offer, offer~creative, offer~host]`.

use traqq_core::config::{AddValueConfig, DistributionConfig, MappingConfig, TraqqConfig};

/// Bitmap (unique count) patterns.
pub const BITMAP: [&str; 1] = ["ip"];
/// Counter patterns.
pub const ADD: [&str; 5] = [
    "event",
    "event~offer",
    "event~offer~creative",
    "event~offer~channel",
    "event~geo",
];
/// The one value-sum: `(key, add_key)`.
pub const ADD_VALUE: (&str, &str) = ("offer~event", "amount");
/// Leaderboard patterns.
pub const TOP: [&str; 5] = ["geo", "offer", "geo~offer", "offer~creative", "offer~host"];

/// The distribution of issue 17's variant of the workload: `(key, value_key)`.
pub const DISTRIBUTION: (&str, &str) = ("event~geo", "amount");

/// Every `find` a dashboard of this mapping makes, as `(metric_type, pattern, add_key)`:
/// what the query benchmarks run, merged over the range.
pub fn finds() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    let mut out = Vec::new();
    out.extend(BITMAP.iter().map(|p| ("bmp", *p, None)));
    out.extend(ADD.iter().map(|p| ("add", *p, None)));
    out.push(("adv", ADD_VALUE.0, Some(ADD_VALUE.1)));
    out.extend(TOP.iter().map(|p| ("top", *p, None)));
    out
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The standard mapping as this project's config (UTC days, no hourly buckets, default limits).
pub fn standard_config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: strings(&BITMAP),
            add: strings(&ADD),
            add_value: vec![AddValueConfig {
                key: ADD_VALUE.0.into(),
                add_key: ADD_VALUE.1.into(),
            }],
            top: strings(&TOP),
            distribution: Vec::new(),
        },
        ..TraqqConfig::default()
    }
}

/// The standard mapping as the `[mapping]` table of a `traqq` config file, for the commands
/// the benches run as whole processes (without a config, `traqq` records its own smaller
/// default mapping).
pub fn standard_mapping_toml() -> String {
    let list = |patterns: &[&str]| format!("{patterns:?}");
    format!(
        "[mapping]\nbitmap = {}\nadd = {}\nadd_value = [{{ key = {:?}, add_key = {:?} }}]\ntop = {}\n",
        list(&BITMAP),
        list(&ADD),
        ADD_VALUE.0,
        ADD_VALUE.1,
        list(&TOP)
    )
}

/// The standard mapping plus one distribution, [`DISTRIBUTION`] (`dst` of `amount` per
/// `event~geo`): what `traqq-bench distribution` compares with [`standard_config`].
pub fn distribution_config() -> TraqqConfig {
    let mut config = standard_config();
    config.mapping.distribution = vec![DistributionConfig {
        key: DISTRIBUTION.0.into(),
        value_key: DISTRIBUTION.1.into(),
    }];
    config
}

/// The same mapping as a traqq 0.2 config.
pub fn standard_config_v02() -> traqq02::TraqqConfig {
    traqq02::TraqqConfig {
        mapping: traqq02::MappingConfig {
            bitmap: strings(&BITMAP),
            add: strings(&ADD),
            add_value: vec![traqq02::AddValueConfig {
                key: ADD_VALUE.0.into(),
                add_key: ADD_VALUE.1.into(),
            }],
            top: strings(&TOP),
        },
        time: traqq02::TimeConfig::default(),
        limits: traqq02::LimitsConfig::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_toml_mapping_is_the_standard_one() {
        #[derive(serde::Deserialize)]
        struct File {
            mapping: MappingConfig,
        }
        let file: File = toml::from_str(&standard_mapping_toml()).unwrap();
        assert_eq!(file.mapping, standard_config().mapping);
    }
}
