//! `traqq prune`: applies `[retention]` (and drops the id sets past `[event] dedup_days`) to a
//! local store now; `traqq migrate`: registers the buckets of traqq 0.2 / trk2 data so
//! retention covers them.

use std::process::ExitCode;

use crate::config::FileConfig;
use crate::UsageError;

pub(super) fn prune(config: &FileConfig) -> anyhow::Result<ExitCode> {
    let r = config.retention;
    let ids = config.event.id_field.is_some();
    if r.daily_days == 0 && r.hourly_days == 0 && !ids {
        println!(
            "retention keeps everything (retention.daily_days = 0, retention.hourly_days = 0): nothing to prune"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let storage = config.open_store()?;
    let traqq = traqq_storage::Traqq::with_shared_storage(config.traqq(), storage, &config.prefix)
        .map_err(|e| UsageError(e.to_string()))?;
    let report = traqq.prune(traqq.now())?;
    traqq.flush()?;
    let keep = |days: u32| {
        if days == 0 {
            "all".to_owned()
        } else {
            days.to_string()
        }
    };
    println!(
        "pruned {} buckets ({} keys) from {}; keeping {} days of daily and {} days of hourly buckets",
        report.buckets,
        report.keys,
        crate::store::describe(&config.storage),
        keep(r.daily_days),
        keep(r.hourly_days)
    );
    if ids {
        println!(
            "dropped {} event id sets older than event.dedup_days = {}",
            report.id_sets, config.event.dedup_days
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `traqq migrate`: registers the buckets of data written without the bucket registry.
pub(super) fn migrate(config: &FileConfig) -> anyhow::Result<ExitCode> {
    let storage = config.open_store()?;
    let traqq = traqq_storage::Traqq::with_shared_storage(config.traqq(), storage, &config.prefix)
        .map_err(|e| UsageError(e.to_string()))?
        .without_auto_prune();
    let store = crate::store::describe(&config.storage);
    match traqq.register_buckets()? {
        None => println!("nothing to migrate ({store}): this store keeps its bucket registry itself"),
        Some(n) => {
            traqq.flush()?;
            println!(
                "registered {n} buckets of prefix {:?} found in {store}; [retention] now covers them",
                config.prefix
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
