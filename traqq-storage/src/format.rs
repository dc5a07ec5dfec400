//! Store format markers: what a persistent store (RocksDB, sled) says when its marker names a
//! format this version cannot read.

/// The refusal for a store marked `found` by a binary that reads format `known` only: a newer
/// format asks for a newer traqq, an older one says how to move the data, both name the two
/// versions.
pub fn other_format_message(backend: &str, found: &[u8], known: &[u8]) -> String {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let number = |v: &[u8]| text(v).parse::<u32>().ok();
    match (number(found), number(known)) {
        (Some(f), Some(k)) if f > k => format!(
            "{backend} store format {f} was written by a newer traqq; this version reads format {k}: \
             open it with a traqq that knows format {f}"
        ),
        (Some(f), Some(k)) => format!(
            "{backend} store format {f} is older than format {k}, the one this version reads: record \
             the data again into a new store (there is no migration from format {f})"
        ),
        _ => format!(
            "{backend} store format marker {:?} is not one this version knows (it reads format {})",
            text(found),
            text(known)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_older_and_unknown_formats_name_both_versions() {
        let newer = other_format_message("traqq-rocks", b"3", b"2");
        assert!(
            newer.contains("format 3 was written by a newer traqq") && newer.contains("reads format 2"),
            "{newer}"
        );
        let older = other_format_message("traqq-sled", b"1", b"2");
        assert!(older.contains("format 1 is older than format 2"), "{older}");
        let junk = other_format_message("traqq-sled", b"x", b"2");
        assert!(junk.contains("\"x\"") && junk.contains("format 2"), "{junk}");
    }
}
