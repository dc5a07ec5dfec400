//! Store format markers: what a persistent store (RocksDB, sled) says when its marker names a
//! format this version cannot read, and the sketch family it keeps.

use traqq_core::sketch::SketchFamily;

/// The key of the marker naming the sketch family a persistent store keeps (a leading NUL
/// byte, which traqq keys never contain).
pub const SKETCH_FAMILY_KEY: &[u8] = b"\0traqq\0sketches";

/// The family a store created by this version keeps: Redis's, so its unique counts agree with
/// a Redis store's and its sketches move to and from Redis (`traqq export` / `traqq restore`).
pub const NEW_STORE_SKETCHES: SketchFamily = SketchFamily::Redis;

/// The family a store keeps, from its marker: none means a store created before traqq
/// recorded it, which keeps [`SketchFamily::Traqq`]; a marker naming no family is an error.
pub fn sketch_family(marker: Option<&[u8]>) -> Result<SketchFamily, String> {
    match marker {
        None => Ok(SketchFamily::Traqq),
        Some(name) => std::str::from_utf8(name)
            .ok()
            .and_then(SketchFamily::from_name)
            .ok_or_else(|| {
                format!(
                    "sketch family marker {:?} names no family this version knows (traqq, redis)",
                    String::from_utf8_lossy(name)
                )
            }),
    }
}

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
    fn sketch_family_markers() {
        assert_eq!(sketch_family(None), Ok(SketchFamily::Traqq));
        assert_eq!(sketch_family(Some(b"redis")), Ok(SketchFamily::Redis));
        assert_eq!(sketch_family(Some(b"traqq")), Ok(SketchFamily::Traqq));
        assert!(sketch_family(Some(b"mur")).unwrap_err().contains("\"mur\""));
    }

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
