//! Making sled's files durable after its `flush()`.
//!
//! `fdatasync` of sled's data file alone is not enough. sled 0.34.7 writes any node or log
//! entry over about 128 KB (its segment size over 4) to a file of its own under `blobs/`.
//! It syncs the log entry that points at the file, but never the file or its directory
//! entry. The store's pages make such nodes under load: a full `bench ingest` left 68 blob
//! files holding 19 MB of the store's 56 MB. After a power loss, acknowledged events in
//! them would be unreadable. (The writer now cuts groups small enough to make none.)
//!
//! So when `blobs/` may have changed since the last sync, the whole filesystem holding
//! the store is synced (`syncfs`, Linux), which writes exactly what is dirty, the blobs
//! and their directory entries included. Otherwise `fdatasync` of the data file is
//! enough, and cheaper: `syncfs` at every flush (it also writes the acknowledged
//! watermark and whatever else is dirty) cost one appender at a time about 15 % of its
//! appends/s. Listing `blobs/` to
//! sync only its new files would cost a directory read per flush that grows with the
//! store. Other programs' writes on the same filesystem are synced too: keep the store
//! on a filesystem of its own. Elsewhere than Linux, only the data file is synced.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How old the directory's modification time must be for "unchanged" to be trusted. File
/// times come from the kernel's coarse clock (one tick, 1–10 ms; whole seconds on some
/// filesystems), so a blob created in the same tick as the time last seen leaves it
/// unchanged; and sled writes a blob's bytes just after creating it, so a write stalled
/// past this would be missed. The store's own writes make no blobs (`crate::writer`,
/// `PIECE_BYTES`): waiting long costs little.
const SETTLED: Duration = Duration::from_secs(10);

/// Syncs one sled directory; see the module doc.
pub(crate) struct DiskSync {
    data_file: File,
    blobs: PathBuf,
    /// The modification time of `blobs/` read just before the last filesystem sync, when
    /// it was settled: while it reads the same, no blob was created since that sync.
    synced_blobs: Mutex<Option<SystemTime>>,
}

impl DiskSync {
    /// For the sled directory `dir` (its data file is `db`).
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            data_file: File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            synced_blobs: Mutex::new(None),
        })
    }

    /// After sled's `flush()`: everything it wrote is on the disk when this returns.
    pub fn sync(&self) -> io::Result<()> {
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let blobs_changed = std::fs::metadata(&self.blobs)
            .and_then(|m| m.modified())
            .ok();
        if blobs_changed.is_some() && *synced == blobs_changed {
            return self.data_file.sync_data();
        }
        let now = SystemTime::now();
        sync_filesystem(&self.data_file)?;
        *synced = blobs_changed
            .filter(|changed| now.duration_since(*changed).is_ok_and(|age| age >= SETTLED));
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn sync_filesystem(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `file` keeps open.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(file: &File) -> io::Result<()> {
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_unchanged_blobs_directory_needs_no_filesystem_sync() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        let blobs = File::open(dir.path().join("blobs")).unwrap();
        blobs.set_modified(old).unwrap();
        let disk = DiskSync::open(dir.path()).unwrap();
        let remembered = || *disk.synced_blobs.lock().unwrap();
        assert_eq!(remembered(), None, "nothing is known before the first sync");
        disk.sync().unwrap();
        assert_eq!(remembered(), Some(old));
        // A new blob: the directory changes, and the next sync is of the filesystem. Its
        // time is recent, so it is not trusted after that sync either.
        std::fs::write(dir.path().join("blobs").join("42"), b"node").unwrap();
        disk.sync().unwrap();
        assert_eq!(remembered(), None);
        blobs.set_modified(old).unwrap();
        disk.sync().unwrap();
        assert_eq!(remembered(), Some(old));
    }
}
