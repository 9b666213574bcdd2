//! Processes a test starts: a free port, and one child type that is killed on drop, stops
//! on SIGTERM within a deadline (or fails the test with its log's tail), and is SIGKILLed on
//! demand.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process (the worker, usually), killed on drop.
pub struct Proc {
    child: Child,
    log: Option<PathBuf>,
}

impl Proc {
    /// Takes a spawned child.
    pub fn new(child: Child) -> Proc {
        Proc { child, log: None }
    }

    /// Takes a spawned child whose stderr goes to `log` (shown when it fails to stop).
    pub fn logged(child: Child, log: &Path) -> Proc {
        Proc {
            child,
            log: Some(log.to_path_buf()),
        }
    }

    /// Starts the worker binary with `env` and `args`, its stderr to `log` (appended).
    pub fn worker(env: &[(&str, String)], args: &[&str], log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
        cmd.args(args).stdout(Stdio::null()).stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::logged(cmd.spawn().expect("start the worker"), log)
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The log so far ("" without one).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and its exit status once it stopped; fails the test (with the log's tail)
    /// when it is still running after `within`.
    pub fn sigterm(&mut self, within: Duration) -> ExitStatus {
        sigterm(&mut self.child, within, self.log.as_deref())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// SIGTERM to `child` and its exit status; kills it and fails the test when it does not
/// stop within `within` (showing the tail of `log`, its stderr, when given).
pub fn sigterm(child: &mut Child, within: Duration, log: Option<&Path>) -> ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "the process did not stop within {within:?} of SIGTERM; its log ends:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
