//! Giving disk space back: sled 0.34 reuses the space freed by retention but never truncates its
//! file, so a store that was large once stays large. When a store is opened and its file is
//! mostly free space, its live records are copied into a fresh sled database inside the state
//! directory, the copy's checksum is compared with the original's, and the copy's files replace
//! the old ones.
//!
//! The swap is crash-safe and resumable. Only sled's own files move (`conf`, `db`, `blobs`,
//! `snap.*`); anything else in the state directory (the guard's files, a mounted volume's
//! root) stays where it is:
//! 1. the copy is built in `.shrink/` and marked complete (`.shrink/COMPLETE`) once verified;
//! 2. the old files move to `.shrink-old/`, marked `.shrink-old/MOVED` when all have;
//! 3. the copy's files move into the state directory;
//! 4. `.shrink/` then `.shrink-old/` are removed.
//!
//! Opening a store first finishes an interrupted swap: with a complete copy it redoes steps 2–4
//! (each step skips what is already done), without one it discards the partial copy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Files below this size are never worth rewriting.
pub const SHRINK_MIN_BYTES: u64 = 64 << 20;

/// The file is rewritten when it is this many times the size of its live records (keys and
/// values; sled's own overhead on a fresh copy is about 2×).
pub const SHRINK_RATIO: u64 = 4;

const COPY: &str = ".shrink";
const OLD: &str = ".shrink-old";
const COMPLETE: &str = "COMPLETE";
const MOVED: &str = "MOVED";

/// What a shrink did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shrunk {
    /// Size on disk before.
    pub before: u64,
    /// Size on disk after.
    pub after: u64,
    /// Bytes of live keys and values.
    pub live: u64,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Shrink(format!("{what} {}: {e}", path.display()))
}

/// sled 0.34's files in its directory.
fn sled_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("reading", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("reading", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "conf" || name == "db" || name == "blobs" || name.starts_with("snap.") {
            out.push(entry.path());
        }
    }
    Ok(out)
}

fn move_into(files: &[PathBuf], to: &Path) -> Result<(), StoreError> {
    for f in files {
        let Some(name) = f.file_name() else { continue };
        fs::rename(f, to.join(name)).map_err(|e| io_err("moving", f, e))?;
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", dir, e)),
    }
}

fn sync_dir(dir: &Path) {
    // Best effort: a directory fsync makes the renames durable where the platform allows it.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Takes the state directory's own lock (`store.lock`, created with the directory), so that
/// recovering or rewriting the store never races another process opening it. A held lock is
/// [`StoreError::Locked`].
pub fn lock_dir(dir: &Path) -> Result<fs::File, StoreError> {
    fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
    let path = dir.join("store.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.display().to_string())),
        Err(fs::TryLockError::Error(e)) => Err(io_err("locking", &path, e)),
    }
}

/// Finishes or discards a swap a crash interrupted (see the module doc). Run before sled
/// opens `dir`.
pub fn recover(dir: &Path) -> Result<(), StoreError> {
    let copy = dir.join(COPY);
    let old = dir.join(OLD);
    if copy.join(COMPLETE).exists() {
        finish_swap(dir)?;
        tracing::info!(dir = %dir.display(), "state store: an interrupted shrink was finished");
    } else {
        remove_dir(&copy)?;
        remove_dir(&old)?;
    }
    Ok(())
}

/// Steps 2–4, each skipping what a previous attempt did.
fn finish_swap(dir: &Path) -> Result<(), StoreError> {
    let copy = dir.join(COPY);
    let old = dir.join(OLD);
    if !old.join(MOVED).exists() {
        fs::create_dir_all(&old).map_err(|e| io_err("creating", &old, e))?;
        move_into(&sled_files(dir)?, &old)?;
        fs::write(old.join(MOVED), b"").map_err(|e| io_err("marking", &old, e))?;
        sync_dir(dir);
    }
    move_into(&sled_files(&copy)?, dir)?;
    sync_dir(dir);
    fs::remove_file(copy.join(COMPLETE)).map_err(|e| io_err("unmarking", &copy, e))?;
    remove_dir(&copy)?;
    remove_dir(&old)?;
    Ok(())
}

/// Bytes of every live key and value.
fn live_bytes(db: &sled::Db) -> Result<u64, StoreError> {
    let mut total = 0u64;
    for name in db.tree_names() {
        for kv in db.open_tree(&name)?.iter() {
            let (k, v) = kv?;
            total += (k.len() + v.len()) as u64;
        }
    }
    Ok(total)
}

/// Copies every tree of `from` into `to` (an empty database).
fn copy_all(from: &sled::Db, to: &sled::Db) -> Result<(), StoreError> {
    for name in from.tree_names() {
        let source = from.open_tree(&name)?;
        let target = to.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        for kv in source.iter() {
            let (k, v) = kv?;
            batch.insert(k, v);
            in_batch += 1;
            if in_batch == 10_000 {
                target.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        target.apply_batch(batch)?;
    }
    Ok(())
}

/// Reopens `dir` once the dropped handle's file lock is released: sled's background flusher
/// holds the handle a moment after the last drop (seen in CI as "could not acquire lock").
/// Called with the directory's own lock ([`lock_dir`]) held, so the sled lock can only be
/// this process's lingering handle (or a process that does not take `store.lock`: it is
/// refused as [`StoreError::Locked`] after the wait).
pub(super) fn reopen_when_released(
    dir: &Path,
    reopen: &impl Fn(&Path) -> Result<sled::Db, StoreError>,
) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match reopen(dir) {
            Err(e) if is_lock(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn is_lock(e: &StoreError) -> bool {
    match e {
        StoreError::Locked(_) => true,
        StoreError::Sled(sled::Error::Io(io)) => {
            io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
        }
        _ => false,
    }
}

/// Rewrites the store at `dir` (held open as `db`) when its file is at least `min_bytes` and
/// more than `ratio` times its live records. Returns the database to use: the same one, or the
/// rewritten one reopened.
pub fn shrink_if_mostly_free(
    db: sled::Db,
    dir: &Path,
    min_bytes: u64,
    ratio: u64,
    reopen: impl Fn(&Path) -> Result<sled::Db, StoreError>,
) -> Result<(sled::Db, Option<Shrunk>), StoreError> {
    let before = db.size_on_disk()?;
    if before < min_bytes {
        return Ok((db, None));
    }
    let live = live_bytes(&db)?;
    if before <= live.saturating_mul(ratio) {
        return Ok((db, None));
    }
    let started = std::time::Instant::now();
    let copy_dir = dir.join(COPY);
    remove_dir(&copy_dir)?;
    {
        let copy = sled::Config::new()
            .path(&copy_dir)
            .cache_capacity(super::CACHE_BYTES)
            .open()?;
        copy_all(&db, &copy)?;
        copy.flush()?;
        let (a, b) = (db.checksum()?, copy.checksum()?);
        if a != b {
            drop(copy);
            remove_dir(&copy_dir)?;
            return Err(StoreError::Shrink(format!(
                "the copy of {} does not match the original (checksum {b:08x}, expected {a:08x}); the store was left as it was",
                dir.display()
            )));
        }
    }
    fs::write(copy_dir.join(COMPLETE), b"").map_err(|e| io_err("marking", &copy_dir, e))?;
    sync_dir(&copy_dir);
    drop(db);
    finish_swap(dir)?;
    let db = reopen_when_released(dir, &reopen)?;
    let after = db.size_on_disk()?;
    tracing::info!(
        before_bytes = before,
        after_bytes = after,
        live_bytes = live,
        took_ms = started.elapsed().as_millis() as u64,
        "state store rewritten to give back the space retention freed"
    );
    Ok((
        db,
        Some(Shrunk {
            before,
            after,
            live,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Result<sled::Db, StoreError> {
        Ok(sled::Config::new().path(dir).open()?)
    }

    fn fill(db: &sled::Db, n: usize, value: usize) {
        let t = db.open_tree("jobs").unwrap();
        for i in 0..n {
            t.insert(format!("k{i:08}"), vec![i as u8; value]).unwrap();
        }
        db.flush().unwrap();
    }

    #[test]
    fn a_mostly_free_store_is_rewritten_smaller_with_every_record_and_other_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("guard")).unwrap();
        fs::write(dir.path().join("management-secret"), b"s").unwrap();
        let db = open(dir.path()).unwrap();
        fill(&db, 4000, 4000);
        // Retention: most values shrink to a summary.
        let t = db.open_tree("jobs").unwrap();
        for i in 0..4000 {
            t.insert(format!("k{i:08}"), vec![1u8; 40]).unwrap();
        }
        db.open_tree("meta").unwrap().insert("v", "1").unwrap();
        db.flush().unwrap();
        let sum = db.checksum().unwrap();
        // The threshold sits well above what sled allocates for a small store on open (1.0 to
        // 1.6 MB seen), so "small now" below does not hang on its segment allocation.
        let (db, shrunk) = shrink_if_mostly_free(db, dir.path(), 4 << 20, 4, open).unwrap();
        let shrunk = shrunk.expect("rewritten");
        assert!(shrunk.after * 4 < shrunk.before, "{shrunk:?}");
        assert_eq!(db.checksum().unwrap(), sum);
        assert_eq!(db.open_tree("jobs").unwrap().len(), 4000);
        assert!(dir.path().join("guard").is_dir());
        assert!(dir.path().join("management-secret").is_file());
        assert!(!dir.path().join(COPY).exists() && !dir.path().join(OLD).exists());
        // Small now: not rewritten again.
        let (_, again) = shrink_if_mostly_free(db, dir.path(), 4 << 20, 4, open).unwrap();
        assert_eq!(again, None);
    }

    #[test]
    fn a_swap_interrupted_at_any_step_finishes_or_rolls_back_on_open() {
        for crash_after in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            {
                let db = open(dir.path()).unwrap();
                fill(&db, 10, 10);
            }
            // The copy: one more record than the original, so which one survived shows.
            let copy = dir.path().join(COPY);
            {
                let db = open(&copy).unwrap();
                fill(&db, 11, 10);
            }
            if crash_after >= 1 {
                fs::write(copy.join(COMPLETE), b"").unwrap();
            }
            if crash_after >= 2 {
                // Step 2 half done: one old file moved.
                let old = dir.path().join(OLD);
                fs::create_dir_all(&old).unwrap();
                move_into(&[dir.path().join("conf")], &old).unwrap();
            }
            if crash_after >= 3 {
                let old = dir.path().join(OLD);
                move_into(&sled_files(dir.path()).unwrap(), &old).unwrap();
                fs::write(old.join(MOVED), b"").unwrap();
                move_into(&[copy.join("conf")], dir.path()).unwrap();
            }
            recover(dir.path()).unwrap();
            let db = open(dir.path()).unwrap();
            let expect = if crash_after == 0 { 10 } else { 11 };
            assert_eq!(
                db.open_tree("jobs").unwrap().len(),
                expect,
                "crash after step {crash_after}"
            );
            assert!(!copy.exists() && !dir.path().join(OLD).exists());
        }
    }
}
