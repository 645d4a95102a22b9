//! Making sled's files durable after its `flush()`.
//!
//! `fdatasync` of sled's data file alone is not enough. sled 0.34.7 writes any node or log
//! entry over about 128 KB (its segment size over 4) to a file of its own under `blobs/`.
//! It syncs the log entry that points at the file, but never the file or its directory
//! entry. The store's pages made such nodes under load: a full `bench ingest` left 68 blob
//! files holding 19 MB of the store's 56 MB. After a power loss, acknowledged events in
//! them would be unreadable. (The writer now cuts groups small enough to make none; only
//! events over about 8 KB can.)
//!
//! So each sync first looks at `blobs/`. While its modification time is the one seen, old
//! enough to be trusted, at the last listing, no blob appeared: `fdatasync` of the data
//! file is all. Otherwise the directory is listed, each blob file not known to be complete
//! is synced, then the directory (when it gained a name) and the data file. The first sync
//! after open syncs the whole filesystem (`syncfs`, Linux) instead, the directory itself
//! included, and so does any sync that finds more than `MAX_FILE_SYNCS` blobs to sync
//! (elsewhere than Linux: every blob and the directory, one by one).
//!
//! Until 2026-12-05 every sync that found `blobs/` unsettled was a `syncfs`. A new store's
//! `blobs/` is unsettled for its first `SETTLED`, so every flush of a fresh store, and of
//! every benchmark round, synced the whole filesystem (the acknowledged watermark file
//! included): 64 async appenders of one event gained 3–10 % events/s without it.
//!
//! Why times must settle: file times come from the kernel's coarse clock (one tick,
//! 1–10 ms; whole seconds on some filesystems), so a blob created in the tick of the last
//! listing can leave the directory's time unchanged; and a blob is written by sled's
//! inserting thread (`write_blob`) while its log entry is reserved, so a listing during
//! a later insert can see a file still being written. A directory time, or a blob's own,
//! is trusted once it is `SETTLED` old; a blob synced before that is synced again at each
//! flush until then.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How old a modification time must be for "unchanged since" to be trusted (see the
/// module doc). The store's own writes make no blobs (`crate::writer`, `PIECE_BYTES`):
/// waiting long costs little.
const SETTLED: Duration = Duration::from_secs(10);

/// More unsettled blobs than this in one sync: one `syncfs` is cheaper than a sync each.
const MAX_FILE_SYNCS: usize = 8;

/// Syncs one sled directory; see the module doc.
pub(crate) struct DiskSync {
    data_file: File,
    blobs: PathBuf,
    known: Mutex<Known>,
}

/// What the last listing of `blobs/` established.
#[derive(Debug, Default, PartialEq)]
struct Known {
    /// The directory's time when listed, if it was settled then and every blob in it
    /// complete: while it reads the same, nothing was created in it since.
    dir_time: Option<SystemTime>,
    /// Every name listed.
    listed: HashSet<OsString>,
    /// The blobs synced after their time had settled: complete, and on disk.
    complete: HashSet<OsString>,
    /// The first sync (a whole filesystem's) is done.
    opened: bool,
}

/// One listing's decision: what to sync before the data file.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Only the data file.
    DataFile,
    /// These blob files, then the directory if `new_names`.
    Blobs {
        files: Vec<OsString>,
        new_names: bool,
    },
    /// The whole filesystem.
    Filesystem,
}

/// Decides what a sync must write, given the time of `blobs/` and its listing (each name,
/// with its file's time unless it is known complete) made `now`; and what will be known
/// once it is written.
fn plan(
    known: &Known,
    dir_time: Option<SystemTime>,
    listing: Vec<(OsString, Option<SystemTime>)>,
    now: SystemTime,
) -> (Plan, Known) {
    let settled = |time: Option<SystemTime>| {
        time.filter(|t| now.duration_since(*t).is_ok_and(|age| age >= SETTLED))
    };
    let mut files = Vec::new();
    let mut listed = HashSet::with_capacity(listing.len());
    let mut complete = HashSet::new();
    let mut new_names = false;
    for (name, time) in listing {
        new_names |= !known.listed.contains(&name);
        if known.complete.contains(&name) {
            complete.insert(name.clone());
        } else {
            if settled(time).is_some() {
                complete.insert(name.clone());
            }
            files.push(name.clone());
        }
        listed.insert(name);
    }
    let plan = if !known.opened || files.len() > MAX_FILE_SYNCS {
        Plan::Filesystem
    } else if files.is_empty() && !new_names {
        Plan::DataFile
    } else {
        Plan::Blobs { files, new_names }
    };
    // The directory's time is trusted only with every blob in it complete: the shortcut
    // it allows lists nothing, and a blob still settling must be synced again.
    let all_complete = complete.len() == listed.len();
    let next = Known {
        dir_time: settled(dir_time).filter(|_| all_complete),
        listed,
        complete,
        opened: true,
    };
    (plan, next)
}

impl DiskSync {
    /// For the sled directory `dir` (its data file is `db`).
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            data_file: File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            known: Mutex::new(Known::default()),
        })
    }

    /// After sled's `flush()`: everything it wrote is on the disk when this returns.
    pub fn sync(&self) -> io::Result<()> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let dir_time = std::fs::metadata(&self.blobs)
            .and_then(|m| m.modified())
            .ok();
        if dir_time.is_some() && known.dir_time == dir_time {
            return self.data_file.sync_data();
        }
        let now = SystemTime::now();
        let listing = self.list(&known)?;
        let (plan, next) = plan(&known, dir_time, listing, now);
        match plan {
            Plan::DataFile => self.data_file.sync_data()?,
            Plan::Blobs { files, new_names } => {
                self.sync_blobs(&files, new_names)?;
                self.data_file.sync_data()?;
            }
            Plan::Filesystem => {
                if !sync_filesystem(&self.data_file)? {
                    // No filesystem sync here: every blob and the directory, one by one.
                    let all: Vec<OsString> = next.listed.iter().cloned().collect();
                    self.sync_blobs(&all, true)?;
                    self.data_file.sync_data()?;
                }
            }
        }
        // Only once written: a failed sync leaves everything to be synced again.
        *known = next;
        Ok(())
    }

    /// Syncs these blob files, then the directory if `new_names`.
    fn sync_blobs(&self, files: &[OsString], new_names: bool) -> io::Result<()> {
        for name in files {
            match File::open(self.blobs.join(name)) {
                Ok(file) => file.sync_data()?,
                // sled removed it since the listing (it collects old blobs).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if new_names {
            sync_directory(&self.blobs)?;
        }
        Ok(())
    }

    /// The names in `blobs/` (none if sled has not made it), each with its file's time
    /// unless it is known complete.
    fn list(&self, known: &Known) -> io::Result<Vec<(OsString, Option<SystemTime>)>> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut listing = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let time = if known.complete.contains(&name) {
                None
            } else {
                entry.metadata().and_then(|m| m.modified()).ok()
            };
            listing.push((name, time));
        }
        Ok(listing)
    }
}

/// Syncs the whole filesystem holding `file`; `false` where that cannot be done.
#[cfg(target_os = "linux")]
fn sync_filesystem(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `file` keeps open.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_file: &File) -> io::Result<bool> {
    Ok(false)
}

/// Makes a directory's entries durable.
#[cfg(unix)]
fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> OsString {
        OsString::from(s)
    }

    fn blobs(names: &[&str], new_names: bool) -> Plan {
        Plan::Blobs {
            files: names.iter().map(|n| name(n)).collect(),
            new_names,
        }
    }

    #[test]
    fn the_first_sync_is_of_the_filesystem_then_only_unsettled_blobs_are_synced() {
        let now = SystemTime::now();
        let old = Some(now - Duration::from_secs(60));
        let recent = Some(now - Duration::from_millis(5));
        let (first, known) = plan(&Known::default(), recent, vec![], now);
        assert_eq!(
            first,
            Plan::Filesystem,
            "nothing is known before the first sync"
        );
        assert_eq!(
            known.dir_time, None,
            "a recent directory time is not trusted"
        );

        // An empty, recent directory: nothing to sync but the data file.
        let (empty, known) = plan(&known, recent, vec![], now);
        assert_eq!(empty, Plan::DataFile);

        // A new blob, still recent: synced with the directory, and not yet complete.
        let (one, known) = plan(&known, recent, vec![(name("42"), recent)], now);
        assert_eq!(one, blobs(&["42"], true));
        assert!(known.complete.is_empty());

        // Still recent at the next flush: synced again (sled may still have been
        // writing it), the directory not. Even once the directory's own time is old,
        // it is not trusted while a blob in it is still settling.
        let (again, known) = plan(&known, old, vec![(name("42"), recent)], now);
        assert_eq!(again, blobs(&["42"], false));
        assert_eq!(known.dir_time, None);

        // Settled: synced once more, then complete; the directory's time is trusted.
        let (last, known) = plan(&known, old, vec![(name("42"), old)], now);
        assert_eq!(last, blobs(&["42"], false));
        assert!(known.complete.contains(&name("42")));
        assert_eq!(known.dir_time, old);
        let (done, known) = plan(&known, old, vec![(name("42"), None)], now);
        assert_eq!(done, Plan::DataFile);

        // Many new blobs at once: one filesystem sync instead.
        let many = (0..=MAX_FILE_SYNCS)
            .map(|i| (name(&format!("{}", 100 + i)), recent))
            .chain([(name("42"), None)])
            .collect();
        let (burst, known) = plan(&known, recent, many, now);
        assert_eq!(burst, Plan::Filesystem);
        assert!(
            known.complete.contains(&name("42")),
            "a complete blob stays so"
        );
        assert_eq!(known.listed.len(), MAX_FILE_SYNCS + 2);
    }

    #[test]
    fn a_sync_records_the_settled_directory_and_blobs_of_a_real_store_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let disk = DiskSync::open(dir.path()).unwrap();
        let known = || {
            let k = disk.known.lock().unwrap();
            (k.dir_time, k.complete.len(), k.listed.len())
        };
        let old = SystemTime::now() - Duration::from_secs(60);
        let blob = dir.path().join("blobs").join("42");
        std::fs::write(&blob, b"node").unwrap();
        disk.sync().unwrap();
        assert_eq!(known(), (None, 0, 1), "a new blob is not complete yet");
        File::options()
            .write(true)
            .open(&blob)
            .unwrap()
            .set_modified(old)
            .unwrap();
        File::open(dir.path().join("blobs"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        disk.sync().unwrap();
        assert_eq!(known(), (Some(old), 1, 1));
        // A new blob changes the directory's time: listed again at the next sync.
        std::fs::write(dir.path().join("blobs").join("43"), b"node").unwrap();
        disk.sync().unwrap();
        assert_eq!(known(), (None, 1, 2));
    }
}
