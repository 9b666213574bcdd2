//! `docker compose up` for real: the shipped `docker-compose.yml` (poll profile) started with
//! docker-compose 1.29 through podman's Docker API socket — MLflow on PostgreSQL, devnet, the
//! worker and Prometheus — the demo lifecycle seeded into that MLflow from outside, every event
//! anchored and audited, `status` and `retry` answered by the running worker (inside its
//! container and from the host), Prometheus scraping it with the alerts loaded. Then the `kafka`
//! profile on the same MLflow (the poller removed first): Kafka, `feed` and two consumer-group
//! members anchor a second lifecycle, and `status` in each member answers for its partitions.
//! Then the `cdc` profile (the Kafka pipeline removed): Debezium on MLflow's PostgreSQL set up
//! with the shipped deploy/debezium files, a worker re-keying its topics anchors a third.
//!
//! This machine pulls no image: `deploy/compose/ci/ci.override.yml` swaps image sources only,
//! for images built here from the local Debian base (deploy/compose/ci/README.md). Podman runs
//! no HEALTHCHECK by itself, so the test runs each container's check every 2 s (as a
//! systemd timer would), which `depends_on: condition: service_healthy` waits for.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lab::SEED_B64;
use common::mlflow::venv;
use common::process::free_port;
use common::run::show;
use common::tools::tool;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", show(out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The images `ci.override.yml` names, built from `deploy/compose/ci/`; each is rebuilt only
/// when its Dockerfile (and entrypoint) changed, recorded in a label.
fn build_base_images(podman: &Path) {
    let ci = repo().join("deploy/compose/ci");
    let pip_cache = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/ario-tools/pip");
    std::fs::create_dir_all(&pip_cache).unwrap();
    for (tag, dockerfile, extra) in [
        (
            "localhost/ario-ci/postgres:15",
            "postgres.Dockerfile",
            Some("postgres-entrypoint.sh"),
        ),
        (
            "localhost/ario-ci/prometheus:debian",
            "prometheus.Dockerfile",
            None,
        ),
        ("localhost/ario-ci/mlflow:3.17.2", "mlflow.Dockerfile", None),
        (
            "localhost/ario-ci/kafka:4.1.1",
            "kafka.Dockerfile",
            Some("kafka-entrypoint.sh"),
        ),
        (
            "localhost/ario-ci/connect:4.1.1-debezium-3.6.1",
            "connect.Dockerfile",
            Some("connect-entrypoint.sh"),
        ),
    ] {
        let mut source = std::fs::read(ci.join(dockerfile)).unwrap();
        if let Some(extra) = extra {
            source.extend(std::fs::read(ci.join(extra)).unwrap());
        }
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&source));
        let built = Command::new(podman)
            .args([
                "image",
                "inspect",
                tag,
                "--format",
                "{{index .Labels \"ario.ci.source\"}}",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == hash);
        if built {
            continue;
        }
        let started = Instant::now();
        let mut cmd = Command::new(podman);
        cmd.args([
            "build",
            "--pull=never",
            "--network",
            "host",
            "--format",
            "docker",
            "--label",
            &format!("ario.ci.source={hash}"),
            "-t",
            tag,
            "-f",
        ])
        .arg(ci.join(dockerfile))
        .arg("--volume")
        .arg(format!("{}:/root/.cache/pip", pip_cache.display()));
        // A machine that reaches PyPI through a TLS-inspecting proxy: its CA bundle for pip.
        let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if bundle.exists() {
            cmd.arg("--volume")
                .arg(format!("{}:/etc/ssl/host-ca.crt:ro", bundle.display()))
                .args(["--build-arg", "PIP_CERT=/etc/ssl/host-ca.crt"]);
        }
        // Kafka's context: the broker's jars and its readiness tool, as kafka-local.sh installs
        // them (../shared), beside the files of this directory.
        let context = match dockerfile {
            "kafka.Dockerfile" => kafka_context(&ci),
            "connect.Dockerfile" => connect_context(&ci),
            _ => None,
        };
        let dir = context
            .as_ref()
            .map_or(ci.clone(), |d| d.path().to_path_buf());
        ok(
            &cmd.arg(&dir).output().unwrap(),
            &format!("podman build {tag}"),
        );
        println!(
            "compose: built {tag} in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// A build context of the jars a ../shared recipe installs (`SCRIPT install`, idempotent and
/// locked) under `~/.cache/CACHE`: its `dirs` (from, to) beside `files` of deploy/compose/ci.
fn jar_context(
    ci: &Path,
    script: &str,
    cache: &str,
    dirs: &[(&str, &str)],
    files: &[&str],
) -> Option<tempfile::TempDir> {
    let out = Command::new("bash")
        .arg(common::shared_dir().join(script))
        .arg("install")
        .output()
        .unwrap();
    ok(&out, &format!("{script} install"));
    let cache = PathBuf::from(std::env::var("HOME").unwrap())
        .join(".cache")
        .join(cache);
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in dirs {
        let out = Command::new("cp")
            .arg("-r")
            .arg(cache.join(from))
            .arg(dir.path().join(to))
            .output()
            .unwrap();
        ok(&out, &format!("copy {from}"));
    }
    for f in files {
        std::fs::copy(ci.join(f), dir.path().join(f)).unwrap();
    }
    Some(dir)
}

/// Kafka's build context: the broker's jars and kafka-local.sh's readiness tool.
fn kafka_context(ci: &Path) -> Option<tempfile::TempDir> {
    jar_context(
        ci,
        "tools/kafka/kafka-local.sh",
        "kafka-4.1.1",
        &[("lib", "libs"), ("tools", "tools")],
        &[
            "kafka-entrypoint.sh",
            "kafka-topics.sh",
            "log4j2.properties",
        ],
    )
}

/// Kafka Connect's build context: Connect's jars and the Debezium PostgreSQL plugin.
fn connect_context(ci: &Path) -> Option<tempfile::TempDir> {
    jar_context(
        ci,
        "tools/cdc/cdc-local.sh",
        "ario-cdc/connect-4.1.1-debezium-3.6.1.Final",
        &[("lib", "lib"), ("plugins", "plugins")],
        &["connect-entrypoint.sh", "connect-log4j2.properties"],
    )
}

/// A compose project started through podman's API socket: stopped, its volumes removed and the
/// socket's service killed when dropped.
struct Project {
    compose: PathBuf,
    podman: PathBuf,
    name: String,
    env_file: PathBuf,
    socket: PathBuf,
    service: Child,
    health_loop: Arc<AtomicBool>,
    worker_image: String,
    _dir: tempfile::TempDir,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Output {
        self.compose_in("poll", args)
    }

    /// docker-compose with `COMPOSE_PROFILES=profile`.
    fn compose_in(&self, profile: &str, args: &[&str]) -> Output {
        Command::new(&self.compose)
            .arg("-p")
            .arg(&self.name)
            .arg("--env-file")
            .arg(&self.env_file)
            .args([
                "-f",
                "docker-compose.yml",
                "-f",
                "deploy/compose/ci/ci.override.yml",
            ])
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("COMPOSE_PROFILES", profile)
            .current_dir(repo())
            .output()
            .unwrap()
    }

    fn container(&self, service: &str) -> String {
        if service.ends_with(|c: char| c.is_ascii_digit()) && service.contains('_') {
            // `kafka-worker_2`: a replica.
            return format!("{}_{service}", self.name);
        }
        format!("{}_{service}_1", self.name)
    }

    /// `podman exec` in a service's container.
    fn exec(&self, service: &str, args: &[&str]) -> Output {
        Command::new(&self.podman)
            .arg("exec")
            .arg(self.container(service))
            .args(args)
            .output()
            .unwrap()
    }

    fn logs(&self, service: &str) -> String {
        let out = Command::new(&self.podman)
            .args(["logs", "--tail", "60"])
            .arg(self.container(service))
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose_in("poll,kafka,cdc", &["down", "-v", "--timeout", "20"]);
        let _ = Command::new(&self.podman)
            .args(["rmi", "-f", &self.worker_image])
            .output();
        self.health_loop.store(false, Ordering::SeqCst);
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

/// Runs every running container's HEALTHCHECK of `project` every 2 s until `live` is false.
fn run_healthchecks(podman: PathBuf, project: String, live: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while live.load(Ordering::SeqCst) {
            let names = Command::new(&podman)
                .args([
                    "ps",
                    "--filter",
                    &format!("label=com.docker.compose.project={project}"),
                    "--format",
                    "{{.Names}}",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            for name in names.lines() {
                let _ = Command::new(&podman)
                    .args(["healthcheck", "run", name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

fn wait_until(
    what: &str,
    timeout: Duration,
    logs: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", logs());
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn compose_up_anchors_the_demo_lifecycle_and_the_running_worker_answers_status() {
    let Some(podman) = tool("podman") else { return };
    let Some(compose) = tool("docker-compose") else {
        return;
    };
    let Some(venv) = venv() else { return };
    let started = Instant::now();
    build_base_images(&podman);
    // A tag of this run's own: another run on the machine builds its binary into its own.
    let tag = format!("t{}", std::process::id());
    let out = common::tools::build_worker_image(
        &podman,
        &format!("localhost/ario-ci/ario-mlflow-worker:{tag}"),
    );
    ok(&out, "podman build the worker image");
    let images_s = started.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("podman.sock");
    let service = Command::new(&podman)
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mlflow_port, worker_port, prometheus_port) = (free_port(), free_port(), free_port());
    let env_file = dir.path().join("compose.env");
    std::fs::write(
        &env_file,
        format!(
            "COMPOSE_PROFILES=poll\nARIO_MLFLOW_SIGNING_KEY={SEED_B64}\n\
             # The test venv's runs carry the plugin's `ario.enabled`: no grace needed.\n\
             ARIO_MLFLOW_PLUGIN_GRACE=0\nMLFLOW_PORT={mlflow_port}\nWORKER_PORT={worker_port}\n\
             PROMETHEUS_PORT={prometheus_port}\nMLFLOW_CDC_PASSWORD=cdc-{}\nARIO_CI_TAG={tag}\n",
            std::process::id()
        ),
    )
    .unwrap();
    let name = format!("ario-ci-{}", std::process::id());
    let live = Arc::new(AtomicBool::new(true));
    run_healthchecks(podman.clone(), name.clone(), live.clone());
    let project = Project {
        compose,
        podman: podman.clone(),
        name,
        env_file,
        socket: socket.clone(),
        service,
        health_loop: live,
        worker_image: format!("localhost/ario-ci/ario-mlflow-worker:{tag}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "podman's API socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let up = Instant::now();
    let out = project.compose(&["up", "-d"]);
    assert!(
        out.status.success(),
        "docker-compose up: {}\nmlflow:\n{}\nworker:\n{}",
        show(&out),
        project.logs("mlflow"),
        project.logs("worker")
    );
    let uri = format!("http://127.0.0.1:{mlflow_port}");
    let worker_logs = || project.logs("worker");
    let readyz = || {
        Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{worker_port}/readyz")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    wait_until(
        "the worker ready (MLflow, Turbo on devnet, its store)",
        Duration::from_secs(180),
        worker_logs,
        || readyz().contains("\"ready\":true"),
    );
    let up_s = up.elapsed().as_secs_f64();

    // The demo lifecycle, from outside the stack: the client talks to the published MLflow.
    let seeded = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/data/mlflow/scenario.py"))
        .args([&uri, "compose"])
        .env("MLFLOW_TRACKING_URI", &uri)
        .output()
        .unwrap();
    let ids = common::lab::last_json_line(&ok(&seeded, "scenario.py").into_bytes());
    let model = ids["model_name"].as_str().unwrap().to_string();

    // `status` inside the worker's container: the store is held, so it asks the listener.
    let status = || -> Value {
        let out = project.exec("worker", &["ario-mlflow-worker", "status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let done = |s: &Value| -> u64 {
        s["stores"][0]["counts"]
            .as_object()
            .map(|c| c.values().map(|v| v["done"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    // 2 training runs, 2 datasets, registration, promotion, alias, 3 predictions; the run with
    // a NaN metric parks with its cause.
    wait_until(
        "the demo lifecycle anchored",
        Duration::from_secs(240),
        worker_logs,
        || done(&status()) >= 10,
    );
    let s = status();
    assert_eq!(s["mode"], "poll", "{s}");
    assert_eq!(done(&s), 10, "{s}");
    let parked = s["stores"][0]["parked"].as_array().unwrap().clone();
    assert_eq!(parked.len(), 1, "{s}");
    assert!(
        parked[0]["error"].as_str().unwrap().contains("NaN"),
        "{parked:?}"
    );
    let text = ok(
        &project.exec("worker", &["ario-mlflow-worker", "status"]),
        "status in the container",
    );
    assert!(text.contains("(poll mode): 1 store(s)"), "{text}");

    // Every stage of the version verifies: the worker's own audit against compose's MLflow and
    // devnet (its gateway), inside the stack.
    let audit = ok(
        &project.exec(
            "worker",
            &["ario-mlflow-worker", "audit", &format!("{model}/1")],
        ),
        "audit",
    );
    assert!(audit.contains("PASS    audit verdict"), "{audit}");
    assert_eq!(audit.matches("\nPASS ").count(), 10, "{audit}");

    // From the host: the published listener, with the management secret the worker generated.
    let secret = ok(
        &project.exec(
            "worker",
            &["cat", "/var/lib/ario-mlflow-worker/state/management-secret"],
        ),
        "read the management secret",
    );
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), secret.trim()).unwrap();
    let host = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
            .args(args)
            .args(["--worker", &format!("http://127.0.0.1:{worker_port}")])
            .arg("--management-secret-file")
            .arg(secret_file.path())
            .output()
            .unwrap()
    };
    let from_host: Value =
        serde_json::from_str(&ok(&host(&["status", "--json"]), "status from the host")).unwrap();
    assert_eq!(done(&from_host), 10, "{from_host}");
    let retried = ok(&host(&["retry", "--all-parked"]), "retry from the host");
    assert!(retried.contains("re-queued 1 job(s)"), "{retried}");
    wait_until(
        "the retried NaN run parked again (its cause is in its data)",
        Duration::from_secs(60),
        worker_logs,
        || {
            status()["stores"][0]["parked"]
                .as_array()
                .is_some_and(|p| p.len() == 1)
        },
    );

    // Prometheus (published) scrapes the worker by compose's DNS, with every alert loaded.
    let prometheus = |path: &str| -> Value {
        Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{prometheus_port}{path}")])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default()
    };
    wait_until(
        "Prometheus scraping the worker",
        Duration::from_secs(90),
        || project.logs("prometheus"),
        || {
            prometheus("/api/v1/targets")["data"]["activeTargets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["health"] == "up"))
        },
    );
    let rules: usize = prometheus("/api/v1/rules")["data"]["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .map(|g| g["rules"].as_array().map_or(0, |r| r.len()))
                .sum()
        })
        .unwrap_or(0);
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    assert_eq!(rules, alerts.matches("- alert:").count());
    println!(
        "compose (poll): images {images_s:.0} s, `docker-compose up` to ready {up_s:.0} s; the demo lifecycle anchored (10 events, the NaN run parked), audit PASS on 10 stages, `status`/`retry` answered by the running worker in its container and from the host, Prometheus up with {rules} alerts; {:.0} s so far",
        started.elapsed().as_secs_f64()
    );

    // The Kafka profile on the same MLflow: the poller removed first (never two pipelines on
    // one registry), then Kafka, `feed` and two consumer-group members.
    let kafka_started = Instant::now();
    ok(
        &project.compose(&["rm", "-sf", "worker"]),
        "remove the poll worker",
    );
    let out = project.compose_in("kafka", &["up", "-d"]);
    assert!(
        out.status.success(),
        "docker-compose up (kafka): {}\nkafka:\n{}\nfeed:\n{}",
        show(&out),
        project.logs("kafka"),
        project.logs("feed")
    );
    let members = ["kafka-worker_1", "kafka-worker_2"];
    let member_logs = || members.iter().map(|m| project.logs(m)).collect::<String>();
    for member in members {
        wait_until(
            &format!("{member} ready (its partitions assigned)"),
            Duration::from_secs(240),
            member_logs,
            || {
                let out = project.exec(member, &["curl", "-s", "127.0.0.1:9847/readyz"]);
                String::from_utf8_lossy(&out.stdout).contains("\"ready\":true")
            },
        );
    }
    let seeded = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/data/mlflow/scenario.py"))
        .args([&uri, "kafka"])
        .env("MLFLOW_TRACKING_URI", &uri)
        .output()
        .unwrap();
    let ids = common::lab::last_json_line(&ok(&seeded, "scenario.py (kafka)").into_bytes());
    let kafka_model = ids["model_name"].as_str().unwrap().to_string();
    // `status` in each member's container: mode kafka, one store per owned partition.
    let member_status = |member: &str| -> Value {
        let out = project.exec(member, &["ario-mlflow-worker", "status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let audit_passes = || {
        let out = project.exec(
            "kafka-worker_1",
            &["ario-mlflow-worker", "audit", &format!("{kafka_model}/1")],
        );
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("PASS    audit verdict")
    };
    wait_until(
        "the second lifecycle anchored through Kafka (audit passes)",
        Duration::from_secs(300),
        member_logs,
        audit_passes,
    );
    let mut partitions = 0;
    let mut parked = 0;
    for member in members {
        let s = member_status(member);
        assert_eq!(s["mode"], "kafka", "{member}: {s}");
        let stores = s["stores"].as_array().cloned().unwrap_or_default();
        assert!(
            stores.iter().all(|st| st["partition"].is_i64()),
            "{member}: {s}"
        );
        partitions += stores.len();
        for st in &stores {
            for p in st["parked"].as_array().unwrap() {
                assert!(p["error"].as_str().unwrap().contains("NaN"), "{p}");
                parked += 1;
            }
        }
    }
    assert_eq!(
        partitions, 6,
        "the topic's 6 partitions between the two members"
    );
    assert!(parked >= 1, "the new NaN run parks in Kafka mode too");
    let text = ok(
        &project.exec("kafka-worker_1", &["ario-mlflow-worker", "status"]),
        "status in a member",
    );
    assert!(text.contains("(kafka mode)"), "{text}");
    // The feed's own listener: healthy by the image's HEALTHCHECK, ready, and scraped by
    // Prometheus with the gauge the dead-feed alert reads.
    let feed_ready = ok(
        &project.exec("feed", &["curl", "-fsS", "127.0.0.1:9847/readyz"]),
        "the feed's /readyz",
    );
    assert!(feed_ready.contains("\"ready\":true"), "{feed_ready}");
    wait_until(
        "Prometheus scraping the feed's last-pass gauge",
        Duration::from_secs(120),
        || project.logs("prometheus"),
        || {
            prometheus("/api/v1/query?query=ario_mlflow_worker_feed_last_pass_timestamp_seconds")
                ["data"]["result"]
                .as_array()
                .is_some_and(|r| r.iter().any(|s| s["metric"]["stage"] == "poll"))
        },
    );
    println!(
        "compose (kafka): Kafka, feed and 2 members up and the second lifecycle anchored and audited in {:.0} s; `status` in each member: mode kafka, {partitions} partition stores, {parked} parked (NaN); the feed ready and scraped; total {:.0} s",
        kafka_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // The cdc profile: the Kafka pipeline removed, Debezium on MLflow's PostgreSQL instead
    // (the shipped setup SQL and connector file), one worker re-keying its topics.
    let cdc_started = Instant::now();
    ok(
        &project.compose_in("kafka", &["rm", "-sf", "feed", "kafka-worker"]),
        "remove the kafka pipeline",
    );
    let out = project.compose_in("cdc", &["up", "-d"]);
    assert!(
        out.status.success(),
        "docker-compose up (cdc): {}\ncdc-setup:\n{}\nconnect:\n{}\ncdc-register:\n{}",
        show(&out),
        project.logs("cdc-setup"),
        project.logs("connect"),
        project.logs("cdc-register")
    );
    let cdc_logs = || {
        format!(
            "{}\n{}",
            project.logs("cdc-worker"),
            project.logs("connect")
        )
    };
    let seeded = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/data/mlflow/scenario.py"))
        .args([&uri, "cdc"])
        .env("MLFLOW_TRACKING_URI", &uri)
        .output()
        .unwrap();
    let ids = common::lab::last_json_line(&ok(&seeded, "scenario.py (cdc)").into_bytes());
    let cdc_model = ids["model_name"].as_str().unwrap().to_string();
    wait_until(
        "the third lifecycle anchored through Debezium (audit passes)",
        Duration::from_secs(300),
        cdc_logs,
        || {
            let out = project.exec(
                "cdc-worker",
                &["ario-mlflow-worker", "audit", &format!("{cdc_model}/1")],
            );
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("PASS    audit verdict")
        },
    );
    let s: Value = serde_json::from_slice(
        &project
            .exec("cdc-worker", &["ario-mlflow-worker", "status", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(s["mode"], "kafka", "{s}");
    assert!(!s["stores"].as_array().unwrap().is_empty(), "{s}");
    println!(
        "compose (cdc): Debezium streaming MLflow's PostgreSQL with the shipped setup and connector, the third lifecycle anchored and audited in {:.0} s; `status` from the CDC worker: {} partition stores",
        cdc_started.elapsed().as_secs_f64(),
        s["stores"].as_array().unwrap().len()
    );
    drop(project);
}
