//! The worker's `/metrics`, read the way Prometheus reads it, and the waits built on it: a test
//! synchronises on what the worker reports (passes completed, jobs open), never on a sleep.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// `GET /metrics` of the listener at `addr` (`127.0.0.1:PORT`); `None` while it does not answer.
pub fn scrape(addr: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The sum of every sample of `name` (exactly: not a longer name it prefixes) whose labels
/// include each `(label, value)` of `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((n, r)) => (n, r.trim_end_matches('}')),
                None => (series, ""),
            };
            let all = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            (metric == name && all)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Waits until the poller at `addr` has completed two more passes and the last one ended with
/// no open job: everything detected so far is anchored (or parked), and a poll after it found
/// nothing new. What a test checks after this has settled — no sleep needed.
pub fn settle(addr: &str, within: Duration) {
    let passes = |t: &str| sum(t, "ario_mlflow_worker_poll_passes_total", &[]);
    let started = Instant::now();
    let mut first: Option<f64> = None;
    let mut last = String::new();
    while started.elapsed() < within {
        if let Some(text) = scrape(addr) {
            let n = passes(&text);
            let open = sum(&text, "ario_mlflow_worker_open_jobs", &[]);
            if !text.contains("ario_mlflow_worker_open_jobs") {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            match first {
                None => first = Some(n),
                Some(f) if n >= f + 2.0 && open == 0.0 => return,
                Some(_) => {}
            }
            last = format!("{n} passes, {open} open jobs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the worker at {addr} did not settle within {within:?} ({last})");
}

/// Waits until the worker at `addr` reports no open job (after a drain of its pipeline): what
/// it detected is anchored or parked. For a worker that polls rarely (webhooks), where
/// [`settle`]'s two passes would take too long.
pub fn no_open_jobs(addr: &str, within: Duration) {
    let started = Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < within {
        if let Some(text) = scrape(addr) {
            let open = sum(&text, "ario_mlflow_worker_open_jobs", &[]);
            if open == 0.0 && text.contains("ario_mlflow_worker_open_jobs") {
                return;
            }
            last = format!("{open} open jobs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the worker at {addr} kept open jobs for {within:?} ({last})");
}

/// Kafka mode: waits until the consumer at `addr` has taken everything (`lag` says the group's
/// lag is 0, asked of the broker) and every owned partition's pipeline reported no open job
/// in three scrapes 300 ms apart (each partition drains every 250 ms at most): whatever was
/// consumed is anchored — a duplicate would have been by now.
pub fn settle_consumer(addr: &str, within: Duration, mut lag: impl FnMut() -> usize) {
    let started = Instant::now();
    let mut quiet = 0;
    let mut last = String::from("no answer");
    while started.elapsed() < within {
        let pending = lag();
        let open = scrape(addr).map(|t| {
            let present = t.contains("ario_mlflow_worker_open_jobs{");
            (present, sum(&t, "ario_mlflow_worker_open_jobs", &[]))
        });
        match open {
            Some((true, n)) if n == 0.0 && pending == 0 => quiet += 1,
            Some((_, n)) => {
                quiet = 0;
                last = format!("lag {pending}, {n} open jobs");
            }
            None => quiet = 0,
        }
        if quiet >= 3 {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the consumer at {addr} did not settle within {within:?} ({last})");
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_summed_by_name_and_labels() {
        let text = "# HELP x\nario_a_total{outcome=\"ok\",w=\"x\"} 3\nario_a_total{outcome=\"error\"} 1\nario_b 2\nario_b_count 7\n";
        assert_eq!(super::sum(text, "ario_a_total", &[]), 4.0);
        assert_eq!(super::sum(text, "ario_a_total", &[("outcome", "ok")]), 3.0);
        assert_eq!(super::sum(text, "ario_a_total", &[("outcome", "o")]), 0.0);
        assert_eq!(super::sum(text, "ario_b", &[]), 2.0);
        assert_eq!(super::sum(text, "ario_c", &[]), 0.0);
    }
}
