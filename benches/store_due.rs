//! Finding due work in a long-lived store: 100,000 jobs of which 10 are unfinished. `due()`
//! reads the open-jobs index; the full `jobs()` scan (what `due()` did before the index) is timed
//! for comparison. Run with `cargo bench --bench store_due` (N overrides the job count).

use std::time::Instant;

use ario_mlflow_worker::event::ChangeEvent;
use ario_mlflow_worker::store::{JobState, Store};

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let key = ChangeEvent::run(format!("{i:032x}"));
        store.detect(&key).unwrap();
        if i >= 10 {
            store
                .update(&format!("run/{i:032x}"), |j| j.state = JobState::Done)
                .unwrap();
        }
    }
    println!(
        "{n} jobs detected and {} closed in {:.1} s",
        n - 10,
        t.elapsed().as_secs_f64()
    );
    let time = |name: &str, f: &dyn Fn() -> usize| {
        let t = Instant::now();
        let mut found = 0;
        for _ in 0..5 {
            found = f();
        }
        println!(
            "{name:<44} {found:>7} jobs, {:>8.2} ms per call",
            t.elapsed().as_secs_f64() * 1000.0 / 5.0
        );
    };
    time("due() via the open-jobs index", &|| {
        store.due(u64::MAX).unwrap().len()
    });
    time("jobs() full scan (the old due())", &|| {
        store
            .jobs()
            .unwrap()
            .into_iter()
            .filter(|j| j.state.is_open())
            .count()
    });
}
