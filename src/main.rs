//! The `ario-mlflow-worker` binary: all behaviour lives in the library (`src/cli.rs`).

fn main() -> std::process::ExitCode {
    tune_malloc();
    ario_mlflow_worker::cli::main()
}

/// Between returns of the allocator's free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// glibc's allocator, set for a service that runs for months (BENCHMARKS.md, *Soak*):
///
/// * each thread that allocates gets its own arena (up to 8 per core), and each arena keeps
///   the memory its thread freed: two arenas serve the runtime's threads at the same throughput;
/// * after a large block (an artifact read for hashing, a long listing) is freed, glibc raises
///   its mmap threshold to that size, so later blocks that large come from the arenas and stay
///   in the process: a fixed threshold (128 KiB, its default) and trim threshold keep large
///   blocks returned to the system when freed.
///
/// * freed memory in the middle of an arena stays in the process until trimmed: a thread returns
///   the arenas' free pages every 30 s (`malloc_trim`), so a burst (a reconciliation reading
///   every run, a backfill) does not set the process's size for good.
///
/// `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` in the environment
/// win.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (var, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 128 * 1024),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 128 * 1024),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only sets an allocator parameter; it is called before any other
            // thread exists.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let _ = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only returns free pages of the arenas to the system.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
    }
}
