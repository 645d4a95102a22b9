//! The acknowledged watermark: the last position (and its hash-chain link) the store
//! acknowledged, kept in a small file beside sled's, so that a log that lost records can
//! never pass for a whole one.
//!
//! Why: sled recovers the longest prefix of its log whose checksums hold. A damaged byte in
//! the middle of the data file (bit rot, a bad copy) therefore makes sled drop every later
//! record *silently*, commit marker included, and the store would open with a shorter log
//! that verifies (measured: one byte flipped in a demo store of 35 records opened as a
//! valid store of 6). The watermark lives outside sled's log, so its claim survives that
//! truncation, and `Store::open` refuses a log that ends before it.
//!
//! The flusher rewrites it in place after each flush it acknowledged (one `pwrite`, no
//! fsync: it is a guard, not what makes appends durable) and fsyncs it when the store
//! closes. It is written only after sled's flush and fdatasync returned, so it never
//! claims more than sled holds; after a power loss it may claim less (the last flushes),
//! which only narrows the check. A missing or unreadable file (a store from before it
//! existed, a torn write) disables the check once, with a warning, and is rewritten.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::types::Position;

/// The file's name in the store's directory.
pub const FILE_NAME: &str = "acknowledged";

const MAGIC: &str = "aftersales-acknowledged v1";

/// What the store acknowledged last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermark {
    pub position: Position,
    pub hash: [u8; 32],
}

/// Fixed width, so an in-place rewrite never leaves a longer old tail behind.
fn render(w: &Watermark) -> String {
    format!(
        "{MAGIC} {:020} {}\n",
        w.position,
        blake3::Hash::from(w.hash).to_hex()
    )
}

fn parse(text: &str) -> Option<Watermark> {
    let rest = text.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let (position, hash) = rest.trim_end().split_once(' ')?;
    let position = position.parse().ok()?;
    let hash = blake3::Hash::from_hex(hash).ok()?;
    Some(Watermark {
        position,
        hash: *hash.as_bytes(),
    })
}

pub(crate) fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The watermark of the store in `dir`, if there is a readable one.
pub(crate) fn read(dir: &Path) -> Result<Option<Watermark>, StoreError> {
    let path = path_in(dir);
    let mut text = String::new();
    match File::open(&path) {
        Ok(mut f) => {
            if let Err(source) = f.read_to_string(&mut text) {
                tracing::warn!(path = %path.display(), error = %source, "the acknowledged watermark cannot be read; the truncation check is skipped once");
                return Ok(None);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                action: "open the acknowledged watermark",
                path,
                source,
            })
        }
    }
    let parsed = parse(&text);
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "the acknowledged watermark is not in the expected form; the truncation check is skipped once");
    }
    Ok(parsed)
}

/// Opens the file for rewriting (created if missing) and writes `w` at once.
pub(crate) fn open_for_writes(dir: &Path, w: &Watermark) -> Result<File, StoreError> {
    let path = path_in(dir);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            action: "open the acknowledged watermark",
            path: path.clone(),
            source,
        })?;
    let text = render(w);
    file.set_len(text.len() as u64)
        .and_then(|()| file.write_all_at(text.as_bytes(), 0))
        .and_then(|()| file.sync_data())
        .map_err(|source| StoreError::Io {
            action: "write the acknowledged watermark",
            path,
            source,
        })?;
    Ok(file)
}

/// Rewrites the watermark in place (no fsync; see the module docs).
pub(crate) fn write(file: &File, w: &Watermark) -> std::io::Result<()> {
    file.write_all_at(render(w).as_bytes(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fixed_width_and_parses_back() {
        let a = Watermark {
            position: 7,
            hash: [3; 32],
        };
        let b = Watermark {
            position: 123_456_789,
            hash: [9; 32],
        };
        assert_eq!(render(&a).len(), render(&b).len());
        assert_eq!(parse(&render(&a)), Some(a));
        assert_eq!(parse(&render(&b)), Some(b));
        assert_eq!(parse("aftersales-acknowledged v1 12"), None);
        assert_eq!(parse("something else"), None);
    }
}
