//! Change data capture end to end, every part real (`../shared/CDC.md`): PostgreSQL 15
//! (Debian's, a throwaway `wal_level=logical` cluster), MLflow 3.17.2 on it, Kafka Connect 4.1.1
//! with Debezium's PostgresConnector 3.6.1 (pgoutput), the Apache Kafka 4.1.1 broker and devnet,
//! started through `../shared/tools/cdc/cdc-local.sh`. The poller is off throughout: every proof
//! comes from the CDC feed.
//!
//! 1. **Snapshot**: a lifecycle made before the connector exists is backfilled by its snapshot
//!    (`op = r`), `run --source kafka --kafka-format debezium` (one process: re-keying inside).
//! 2. **Schemas the decoder does not know and garbage** on a CDC topic: skipped and counted
//!    (log line and metric), garbage to the dead-letter topic; the worker goes on.
//! 3. **Streaming**, split as a scaled-out deployment runs it — `feed --from-debezium` (the
//!    re-keying stage) and `run --source kafka` (the anchoring group) — while Kafka Connect, the
//!    re-keying stage and the worker are each SIGKILLed mid-stream and restarted: a version moved
//!    None→Staging→Production→Archived, an alias set, moved and deleted, traces. Every event is
//!    anchored exactly once; the promotions carry `from_stage` None, Staging, Production; the
//!    alias proofs are signed in commit order; the plugin verifies a sample.
//! 4. **Latency**: MLflow API call → proof accepted by devnet, over this path.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::devnet::TestDevnet;
use common::kafka::Broker;
use common::lab::{Arweave, SEED_B64};
use common::mlflow::venv;
use common::process::Proc;
use common::run::{mlflow_data, show};
use serde_json::Value;

use ario_mlflow_worker::profile::{self, alias::AliasAction};
use ario_mlflow_worker::proof::{jcs, sha256_hex};

const CDC_TOPICS: &str = "mlflow.public.runs,mlflow.public.model_versions,mlflow.public.registered_model_aliases,mlflow.public.trace_info";
/// The four tables and `registered_models` (renames).
const CDC_TABLES_WITH_MODELS: &str = "public.runs,public.model_versions,public.registered_model_aliases,public.trace_info,public.registered_models";
const EVENTS: &str = "cdc.events";
const GROUP: &str = "cdc-test";
/// One process from the CDC topics to proofs.
const RUN_DEBEZIUM: [&str; 9] = [
    "run",
    "--source",
    "kafka",
    "--kafka-format",
    "debezium",
    "--kafka-topic",
    CDC_TOPICS,
    "--kafka-events-topic",
    EVENTS,
];

/// The stack `cdc-local.sh` runs, in a directory of its own; torn down (slot dropped) on drop.
struct Cdc {
    home: tempfile::TempDir,
    venv: PathBuf,
    env: BTreeMap<String, String>,
    /// Kafka Connect's JsonConverter `schemas.enable`.
    schemas: bool,
    /// The captured tables (`CDC_TABLES`), when not the recipe's default four.
    tables: Option<&'static str>,
    /// MLflow runs with workspaces (`MLFLOW_ENABLE_WORKSPACES`, what `--enable-workspaces`
    /// sets; the recipe passes its environment to `mlflow server`).
    workspaces: bool,
}

impl Cdc {
    fn script() -> PathBuf {
        common::shared_dir().join("tools/cdc/cdc-local.sh")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(Self::script())
            .args(args)
            .env("CDC_HOME", self.home.path())
            .env("CDC_VENV", &self.venv)
            .env("CDC_SCHEMAS", self.schemas.to_string())
            .envs(self.tables.map(|t| ("CDC_TABLES", t)))
            .envs(
                self.workspaces
                    .then_some(("MLFLOW_ENABLE_WORKSPACES", "true")),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn must(&self, args: &[&str]) -> Output {
        let started = Instant::now();
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cdc-local.sh {args:?}: {}",
            show(&out)
        );
        eprintln!(
            "cdc-local.sh {} in {:.1} s",
            args.join(" "),
            started.elapsed().as_secs_f64()
        );
        out
    }

    /// PostgreSQL, MLflow on it, and the broker — not Connect yet.
    fn start(venv: &Path, schemas: bool, tables: Option<&'static str>, workspaces: bool) -> Cdc {
        let home = tempfile::tempdir().unwrap();
        // The postgres user runs the cluster inside it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cdc = Cdc {
            home,
            venv: venv.to_path_buf(),
            env: BTreeMap::new(),
            schemas,
            tables,
            workspaces,
        };
        cdc.must(&["install"]);
        cdc.start_pg();
        cdc.must(&["mlflow", "start"]);
        cdc.start_kafka();
        cdc.read_env();
        cdc
    }

    /// PostgreSQL, on a new port when it lost a port race (seen in CI: `could not bind IPv4
    /// address "127.0.0.1": Address already in use` on a port picked free a moment before; the
    /// recipe picks another when the stored one is taken).
    fn start_pg(&self) {
        for attempt in 1..=3 {
            let out = self.run(&["pg", "start"]);
            if out.status.success() {
                return;
            }
            let text = show(&out);
            assert!(
                text.contains("Address already in use") && attempt < 3,
                "cdc-local.sh pg start: {text}"
            );
            eprintln!("postgres start lost a port race (attempt {attempt}); retrying");
            let _ = std::fs::remove_file(self.home.path().join("pg/port"));
        }
    }

    /// The broker, on new ports when it lost a port race: kafka-local.sh retries such a race
    /// only in a directory it created itself, and cdc-local.sh creates the directory first
    /// (seen in CI: `BindException` on a port picked free a moment before).
    fn start_kafka(&self) {
        for attempt in 1..=3 {
            let out = self.run(&["kafka", "start"]);
            if out.status.success() {
                return;
            }
            let text = show(&out);
            let port_race = ["Address already in use", "BindException", "Net.bind"]
                .iter()
                .any(|m| text.contains(m));
            assert!(port_race && attempt < 3, "cdc-local.sh kafka start: {text}");
            eprintln!("kafka start lost a port race (attempt {attempt}); retrying on new ports");
            let _ = self.run(&["kafka", "stop"]);
            let _ = std::fs::remove_dir_all(self.home.path().join("kafka"));
        }
    }

    fn read_env(&mut self) {
        let out = self.must(&["env"]);
        self.env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    fn get(&self, key: &str) -> String {
        self.env
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("cdc-local.sh env has no {key}: {:?}", self.env))
    }

    /// Starts Connect and waits until the connector streams (it snapshots first).
    fn connect_start(&mut self) {
        self.must(&["connect", "start"]);
        self.read_env();
    }

    /// Starts Connect the way an operator following deploy/debezium/ would: the shipped
    /// `postgres-setup.sql` run once by the superuser (the connector's own role, grants,
    /// `REPLICA IDENTITY FULL`, the publication), then the shipped
    /// `postgres-connector.properties` with only the address and the replication factor of this
    /// one-broker machine changed — the connector connects as `mlflow_cdc`, not as MLflow's
    /// owner. Waits until the task runs and the slot is active. (`down` stops it: the worker
    /// file is where cdc-local.sh keeps its own.)
    fn connect_start_shipped(&mut self) {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/debezium");
        let pg_port = self.get("PG_PORT");
        let psql = |args: &[&str]| {
            let out = Command::new("/usr/lib/postgresql/15/bin/psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg_port,
                    "-U",
                    "postgres",
                    "-d",
                    "mlflow",
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-qAtX"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "psql {args:?}: {}", show(&out));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        psql(&["-f", deploy.join("postgres-setup.sql").to_str().unwrap()]);
        assert_eq!(
            psql(&[
                "-c",
                "SELECT rolsuper FROM pg_roles WHERE rolname = 'mlflow_cdc'"
            ]),
            "f",
            "the connector's role is not a superuser"
        );
        let shipped =
            std::fs::read_to_string(deploy.join("postgres-connector.properties")).unwrap();
        let connector: String = shipped
            .lines()
            .map(|l| match l.split_once('=') {
                Some(("database.hostname", _)) => "database.hostname=127.0.0.1".to_string(),
                Some(("database.port", _)) => format!("database.port={pg_port}"),
                Some(("topic.creation.default.replication.factor", _)) => {
                    "topic.creation.default.replication.factor=1".to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cd = self.home.path().join("connect");
        std::fs::create_dir_all(&cd).unwrap();
        let jars = PathBuf::from(std::env::var("HOME").unwrap())
            .join(".cache/ario-cdc/connect-4.1.1-debezium-3.6.1.Final");
        let rest = free_listen();
        let rest_port = rest.rsplit(':').next().unwrap().to_string();
        std::fs::write(cd.join("rest.port"), &rest_port).unwrap();
        std::fs::write(
            cd.join("worker.properties"),
            format!(
                "bootstrap.servers={}\nkey.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable=false\nvalue.converter.schemas.enable=false\noffset.storage.file.filename={}/connect.offsets\noffset.flush.interval.ms=1000\nplugin.path={}/plugins\nplugin.discovery=service_load\nlisteners=http://127.0.0.1:{rest_port}\n",
                self.get("KAFKA_BOOTSTRAP"),
                cd.display(),
                jars.display()
            ),
        )
        .unwrap();
        std::fs::write(cd.join("connector.properties"), connector).unwrap();
        std::fs::write(
            cd.join("log4j2.properties"),
            format!("status = warn\nappender.file.type = File\nappender.file.name = FILE\nappender.file.fileName = {}/connect.log\nappender.file.layout.type = PatternLayout\nappender.file.layout.pattern = [%d] %p %m (%c)%n\nrootLogger.level = INFO\nrootLogger.appenderRef.file.ref = FILE\n", cd.display()),
        )
        .unwrap();
        let child = Command::new("setsid")
            .args([
                "java",
                "-Xms64m",
                "-Xmx384m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile={}/log4j2.properties",
                cd.display()
            ))
            .arg("-cp")
            .arg(format!("{}/lib/*", jars.display()))
            .arg("org.apache.kafka.connect.cli.ConnectStandalone")
            .arg(cd.join("worker.properties"))
            .arg(cd.join("connector.properties"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(cd.join("pid"), child.id().to_string()).unwrap();
        // `down` stops it (cdc-local.sh finds it by its pid file); reap it then.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let started = Instant::now();
        wait_for(
            "the shipped connector streaming as mlflow_cdc",
            Duration::from_secs(180),
            &[&cd.join("connect.log")],
            || {
                let state = Command::new("curl")
                    .args(["-sf", "--max-time", "3"])
                    .arg(format!("http://{rest}/connectors/mlflow-cdc/status"))
                    .output()
                    .ok()
                    .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok());
                let running = state.is_some_and(|s| s["tasks"][0]["state"] == "RUNNING");
                running
                    && psql(&[
                        "-c",
                        "SELECT active FROM pg_replication_slots WHERE slot_name = 'mlflow_cdc'",
                    ]) == "t"
            },
        );
        eprintln!(
            "shipped connector streaming in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        self.read_env();
    }

    /// SIGKILL to Kafka Connect (no offset flush, no clean shutdown).
    fn connect_kill(&self) {
        let pid = std::fs::read_to_string(self.home.path().join("connect/pid")).unwrap();
        let pid = pid.trim();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = Command::new("kill").args(["-KILL", pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("Kafka Connect (pid {pid}) SIGKILLed");
    }
}

impl Drop for Cdc {
    fn drop(&mut self) {
        let out = self.run(&["down", "--purge"]);
        if !out.status.success() {
            eprintln!("cdc-local.sh down: {}", show(&out));
        }
    }
}

/// The worker's stop on SIGTERM may take this long.
const STOP_WITHIN: Duration = Duration::from_secs(40);

struct Lab {
    cdc: Cdc,
    _rt: tokio::runtime::Runtime,
    dn: TestDevnet,
    home: tempfile::TempDir,
    ca: PathBuf,
    gateway: String,
    venv: PathBuf,
    listen: String,
}

/// The two end-to-end tests share the machine: one stack at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Lab {
    /// The CDC stack (Connect not started) and devnet over TLS; `None` (with a notice) where
    /// PostgreSQL 15 is not installed outside CI.
    fn start(schemas: bool) -> Option<(std::sync::MutexGuard<'static, ()>, Lab)> {
        Self::start_with(schemas, None)
    }

    /// [`Self::start`] capturing `tables`.
    fn start_with(
        schemas: bool,
        tables: Option<&'static str>,
    ) -> Option<(std::sync::MutexGuard<'static, ()>, Lab)> {
        Self::start_full(schemas, tables, false)
    }

    /// [`Self::start_with`], MLflow with workspaces or not.
    fn start_full(
        schemas: bool,
        tables: Option<&'static str>,
        workspaces: bool,
    ) -> Option<(std::sync::MutexGuard<'static, ()>, Lab)> {
        if std::env::var_os("CI").is_none()
            && !Path::new("/usr/lib/postgresql/15/bin/initdb").exists()
        {
            eprintln!("NOTICE: PostgreSQL 15 not installed; CDC test SKIPPED (CI installs it)");
            return None;
        }
        let venv = venv()?;
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let cdc = Cdc::start(&venv, schemas, tables, workspaces);
        let Arweave {
            rt,
            dn,
            home,
            ca,
            gateway,
        } = Arweave::start();
        eprintln!(
            "CDC stack (schemas.enable={schemas}) up in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Some((
            guard,
            Lab {
                cdc,
                _rt: rt,
                dn,
                home,
                ca,
                gateway,
                venv,
                listen: free_listen(),
            },
        ))
    }

    fn env(&self, state: &Path) -> Vec<(&'static str, String)> {
        let mut env = common::lab::anchoring_env(
            &self.cdc.get("MLFLOW_TRACKING_URI"),
            &self.dn,
            &self.ca,
            &self.gateway,
            self.home.path(),
            state,
        );
        env.extend([
            ("ARIO_MLFLOW_KAFKA_BROKERS", self.cdc.get("KAFKA_BOOTSTRAP")),
            ("ARIO_MLFLOW_KAFKA_GROUP", GROUP.into()),
            ("ARIO_MLFLOW_KAFKA_PARTITIONS", "3".into()),
            (
                "RUST_LOG",
                std::env::var("CDC_TEST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
            ),
        ]);
        env
    }

    fn spawn(&self, state: &Path, args: &[&str], log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Proc::logged(
            Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
                .env("ARIO_MLFLOW_LISTEN", &self.listen)
                .env("ARIO_MLFLOW_PLUGIN_GRACE", "0")
                .args(args)
                .envs(self.env(state))
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .unwrap(),
            log,
        )
    }

    /// Starts `cdc_lifecycle.py` with `args`; its lines come as steps are done.
    fn lifecycle(&self, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
        let mut child = Command::new(self.venv.join("bin/python"))
            .arg(mlflow_data("cdc_lifecycle.py"))
            .arg(self.cdc.get("MLFLOW_TRACKING_URI"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        (child, out)
    }

    /// Every envelope devnet holds, with when devnet first accepted it.
    fn envelopes(&self) -> Vec<(Value, u64)> {
        self.dn
            .handle
            .items()
            .into_iter()
            .map(|item| {
                let bytes =
                    std::fs::read(self.dn.handle.items_dir().join(format!("{}.bin", item.id)))
                        .unwrap();
                let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
                (
                    serde_json::from_slice(&parsed.data).unwrap(),
                    item.first_seen_ms,
                )
            })
            .collect()
    }

    /// The body of `GET path` on the worker's listener.
    fn get(&self, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(&self.listen).unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or(text)
    }
}

/// The next step line of the lifecycle script.
fn step(out: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the lifecycle script ended early"
        );
        if line.starts_with('{') {
            return serde_json::from_str(&line).unwrap();
        }
    }
}

fn until_step(out: &mut BufReader<ChildStdout>, name: &str) -> Value {
    loop {
        let s = step(out);
        eprintln!("lifecycle: {s}");
        if s["step"] == name {
            return s;
        }
    }
}

fn wait_for(what: &str, timeout: Duration, logs: &[&Path], done: impl FnMut() -> bool) {
    common::run::wait_for(what, timeout, Duration::from_millis(100), logs, done)
}

fn hash(payload: &Value) -> String {
    sha256_hex(&jcs::canonicalize(payload).unwrap())
}

fn free_listen() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Envelopes per (event type, payload hash): each event once means every count is 1.
fn counts(envelopes: &[(Value, u64)]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for (e, _) in envelopes {
        let key = (
            e["event_type"].as_str().unwrap().to_string(),
            e["payload_hash"].as_str().unwrap().to_string(),
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

/// Snapshot records (`op = r`) on the four CDC topics.
fn snapshot_reads(broker: &Broker) -> usize {
    CDC_TOPICS
        .split(',')
        .flat_map(|t| broker.read_all(t))
        .filter(|r| {
            r.value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .is_some_and(|v| v["op"] == "r" || v["payload"]["op"] == "r")
        })
        .count()
}

fn of_type<'a>(envelopes: &'a [(Value, u64)], t: &str) -> Vec<&'a (Value, u64)> {
    envelopes
        .iter()
        .filter(|(e, _)| e["event_type"] == t)
        .collect()
}

#[test]
fn cdc_feed_alone_anchors_snapshot_and_stream_once_through_kills_with_true_stage_history() {
    let Some((_one_at_a_time, mut lab)) = Lab::start(false) else {
        return;
    };
    let started = Instant::now();
    let venv = lab.venv.clone();
    let suffix = format!("{}", std::process::id());
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let (log_run, log_feed) = (work.path().join("run.log"), work.path().join("feed.log"));

    // --- 1. Snapshot: the lifecycle exists before the connector does.
    let (mut child, mut out) = lab.lifecycle(&["snapshot", &suffix]);
    let snap = until_step(&mut out, "done");
    assert!(child.wait().unwrap().success());
    let snap_model = snap["model_name"].as_str().unwrap().to_string();
    lab.cdc.connect_start();
    let single = [&RUN_DEBEZIUM[..], &["--kafka-instance-id", "w1"]].concat();
    let mut worker = lab.spawn(&state, &single, &log_run);
    // training, dataset(s), registration, promotion None→Production, alias, prediction
    let snapshot_expected = |envs: &[(Value, u64)]| {
        let t = |k: &str| of_type(envs, k).len();
        t(profile::training::EVENT_TYPE) >= 1
            && t(profile::registration::EVENT_TYPE) >= 1
            && t(profile::promotion::EVENT_TYPE) >= 1
            && t(profile::alias::EVENT_TYPE) >= 1
            && t(profile::prediction::EVENT_TYPE) >= 1
    };
    let t0 = Instant::now();
    wait_for(
        "the snapshot anchored",
        Duration::from_secs(240),
        &[&log_run],
        || snapshot_expected(&lab.envelopes()),
    );
    eprintln!(
        "snapshot anchored in {:.1} s after the connector streamed",
        t0.elapsed().as_secs_f64()
    );
    let promo_snap = hash(&profile::promotion::payload(
        &snap_model,
        "1",
        "None",
        "Production",
    ));
    assert!(
        lab.envelopes()
            .iter()
            .any(|(e, _)| e["payload_hash"] == promo_snap.as_str()),
        "a version read in Production by the snapshot is a None → Production promotion"
    );

    // --- 2. Schemas the decoder does not know, and garbage, on a CDC topic.
    let broker = Broker::attach(&lab.cdc.get("KAFKA_BOOTSTRAP"));
    let captured: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/debezium/run_finished.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut unknown_table = captured["value"].clone();
    unknown_table["source"]["table"] = "experiments".into();
    let mut missing_column = captured["value"].clone();
    missing_column["after"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let key = captured["key"].to_string().into_bytes();
    broker.produce(
        "mlflow.public.runs",
        &[
            (
                key.clone(),
                Vec::new(),
                unknown_table.to_string().into_bytes(),
            ),
            (
                key.clone(),
                Vec::new(),
                missing_column.to_string().into_bytes(),
            ),
            (key.clone(), Vec::new(), b"\x00\x01 not json {".to_vec()),
        ],
    );
    let dlq = format!("{EVENTS}.dlq");
    wait_for(
        "the dead letter",
        Duration::from_secs(60),
        &[&log_run],
        || !broker.read_all(&dlq).is_empty(),
    );
    let dead = broker.read_all(&dlq);
    assert_eq!(dead.len(), 1, "only the garbage is a dead letter");
    assert_eq!(
        dead[0].header("__ario.errors.topic").as_deref(),
        Some("mlflow.public.runs")
    );
    assert_eq!(
        dead[0].header("__ario.errors.exception.class").as_deref(),
        Some("InvalidJson")
    );
    assert_eq!(dead[0].value.as_deref(), Some(&b"\x00\x01 not json {"[..]));
    let metrics = lab.get("/metrics");
    let metric = |reason: &str, table: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("ario_mlflow_worker_cdc_records_skipped_total")
                    && l.contains(&format!("reason=\"{reason}\""))
                    && l.contains(&format!("table=\"{table}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(metric("unknown_table", "other"), 1.0, "{metrics}");
    assert_eq!(metric("missing_column", "runs"), 1.0, "{metrics}");
    let log = std::fs::read_to_string(&log_run).unwrap();
    assert!(log.contains("reason=\"unknown_table\"") || log.contains("reason=unknown_table"));
    assert!(worker.alive(), "the worker survives what it cannot decode");
    let readyz = || serde_json::from_str::<Value>(&lab.get("/readyz")).unwrap();
    assert_eq!(readyz()["checks"]["cdc"]["ok"], true, "{}", readyz());
    // The other checks are probed every --health-interval.
    wait_for(
        "/readyz ready",
        Duration::from_secs(60),
        &[&log_run],
        || readyz()["ready"] == true,
    );
    println!("cdc: unknown table and missing column skipped and counted (metric 1 each), garbage → {dlq} (InvalidJson)");

    // A Connect restart after the snapshot does not snapshot again.
    let reads_after_snapshot = snapshot_reads(&broker);
    assert!(
        reads_after_snapshot >= 4,
        "the snapshot read the lifecycle's rows"
    );
    lab.cdc.connect_kill();
    lab.cdc.connect_start();

    // --- 3. Streaming, scaled-out topology: the re-keying stage and the anchoring group.
    worker.sigterm(STOP_WITHIN);
    // The re-keyer with a listener: its session in /readyz, its heartbeat in /metrics.
    let feed_listen = format!("127.0.0.1:{}", common::process::free_port());
    let feed_args = [
        "feed",
        "--from-debezium",
        "--kafka-topic",
        CDC_TOPICS,
        "--to-kafka",
        EVENTS,
        "--kafka-instance-id",
        "w1",
        "--listen",
        &feed_listen,
    ];
    let run_args = [
        "run",
        "--source",
        "kafka",
        "--kafka-topic",
        EVENTS,
        "--kafka-instance-id",
        "w1",
    ];
    let feed_state = work.path().join("feed-state");
    let mut feed = lab.spawn(&feed_state, &feed_args, &log_feed);
    let mut worker = lab.spawn(&state, &run_args, &log_run);
    let (mut child, mut out) = lab.lifecycle(&["live", &suffix, "1.5"]);
    let first = until_step(&mut out, "registered-1");
    let live_model = first["model_name"].as_str().unwrap().to_string();
    let run_a = first["run"].as_str().unwrap().to_string();
    until_step(&mut out, "registered-2");
    lab.cdc.connect_kill();
    let connect_down = Instant::now();
    lab.cdc.connect_start();
    eprintln!(
        "Kafka Connect back after {:.1} s",
        connect_down.elapsed().as_secs_f64()
    );
    until_step(&mut out, "stage-Production");
    feed.kill9();
    eprintln!("the re-keying stage SIGKILLed");
    feed = lab.spawn(&feed_state, &feed_args, &log_feed);
    until_step(&mut out, "alias-moved");
    worker.kill9();
    eprintln!("the worker SIGKILLed");
    worker = lab.spawn(&state, &run_args, &log_run);
    let done = until_step(&mut out, "done");
    assert!(child.wait().unwrap().success());
    let live_traces: Vec<String> = done["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();

    let promotions = [
        ("None", "Staging"),
        ("Staging", "Production"),
        ("Production", "Archived"),
    ]
    .map(|(f, t)| hash(&profile::promotion::payload(&live_model, "1", f, t)));
    let aliases = [
        profile::alias::payload(&live_model, "1", "champion", AliasAction::Set, None),
        profile::alias::payload(&live_model, "2", "champion", AliasAction::Set, Some("1")),
        profile::alias::payload(&live_model, "2", "champion", AliasAction::Removed, None),
    ]
    .map(|p| hash(&p));
    let has = |envs: &[(Value, u64)], h: &str| envs.iter().any(|(e, _)| e["payload_hash"] == h);
    wait_for(
        "every live event anchored",
        Duration::from_secs(300),
        &[&log_run, &log_feed],
        || {
            let envs = lab.envelopes();
            promotions
                .iter()
                .chain(aliases.iter())
                .all(|h| has(&envs, h))
                && of_type(&envs, profile::training::EVENT_TYPE).len() >= 3
                && of_type(&envs, profile::registration::EVENT_TYPE).len() >= 3
                && of_type(&envs, profile::prediction::EVENT_TYPE).len() >= 4
        },
    );
    // The restarted re-keyer reports its session and keeps its dead-feed gauge fresh.
    wait_for(
        "the re-keyer's listener: session up, heartbeat fresh",
        Duration::from_secs(30),
        &[&log_feed],
        || {
            let text = common::metrics::scrape(&feed_listen).unwrap_or_default();
            let beat = common::metrics::sum(
                &text,
                "ario_mlflow_worker_feed_last_pass_timestamp_seconds",
                &[("stage", "debezium")],
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            common::metrics::sum(&text, "ario_mlflow_worker_ready", &[("check", "cdc")]) == 1.0
                && (now - beat).abs() < 5.0
        },
    );
    // Let anything that would come twice (a redelivery, a replayed transaction) arrive.
    std::thread::sleep(Duration::from_secs(5));
    let envs = lab.envelopes();
    let per_event = counts(&envs);
    let twice: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "anchored more than once: {twice:?}");
    let n = |t: &str| of_type(&envs, t).len();
    assert_eq!(n(profile::training::EVENT_TYPE), 3, "3 runs");
    assert_eq!(n(profile::registration::EVENT_TYPE), 3, "3 versions");
    assert_eq!(
        n(profile::promotion::EVENT_TYPE),
        4,
        "1 snapshot + 3 live promotions"
    );
    assert_eq!(n(profile::alias::EVENT_TYPE), 4, "snap + set, move, delete");
    assert_eq!(n(profile::prediction::EVENT_TYPE), 4, "1 + 3 traces");
    assert!(n(profile::dataset::EVENT_TYPE) >= 1, "datasets anchored");
    assert_eq!(
        snapshot_reads(&broker),
        reads_after_snapshot,
        "Kafka Connect restarts (one clean, two SIGKILLs) never snapshotted again"
    );
    // The alias proofs were signed in the database's commit order.
    let signed_at = |h: &str| {
        envs.iter()
            .find(|(e, _)| e["payload_hash"] == h)
            .map(|(e, _)| e["signed_at"].as_str().unwrap().to_string())
            .unwrap()
    };
    let order: Vec<String> = aliases.iter().map(|h| signed_at(h)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "alias proofs in commit order (set, move, delete)"
    );
    println!(
        "cdc: {} proofs, each once, after Connect, the re-keying stage and the worker were each SIGKILLed mid-stream; promotions from None, Staging, Production; alias proofs in commit order",
        envs.len()
    );

    // The plugin verifies a sample of what the CDC feed anchored.
    let plugin_env = [
        ("REQUESTS_CA_BUNDLE", lab.ca.display().to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("HOME", lab.home.path().display().to_string()),
        ("ARIO_MLFLOW_GATEWAYS", lab.gateway.clone()),
        ("MLFLOW_TRACKING_URI", lab.cdc.get("MLFLOW_TRACKING_URI")),
        ("NO_COLOR", "1".to_string()),
    ];
    let mv = format!("{live_model}/1");
    for args in [
        vec!["verify", "run", run_a.as_str()],
        vec!["verify", "model", mv.as_str()],
        vec!["verify", "trace", live_traces[0].as_str()],
    ] {
        let out = common::plugin::run(&venv, &plugin_env, &args);
        assert!(out.status.success(), "plugin {args:?}: {}", show(&out));
    }

    // --- 4. Latency: MLflow API call → proof accepted by devnet.
    let (mut child, mut out) = lab.lifecycle(&["latency", &suffix, "5", "2"]);
    let mut calls = Vec::new();
    loop {
        let s = step(&mut out);
        if s["step"] == "done" {
            break;
        }
        calls.push((
            s["alias"].as_str().unwrap().to_string(),
            s["at_ms"].as_u64().unwrap(),
        ));
    }
    assert!(child.wait().unwrap().success());
    let seen = |alias: &str| {
        lab.envelopes()
            .into_iter()
            .find(|(e, _)| e["event_type"] == "alias_changed" && e["subject"]["alias"] == alias)
            .map(|(_, ms)| ms)
    };
    let mut latencies = Vec::new();
    for (alias, at) in &calls {
        wait_for(
            "the latency probe anchored",
            Duration::from_secs(60),
            &[&log_run],
            || seen(alias).is_some(),
        );
        latencies.push(seen(alias).unwrap().saturating_sub(*at));
    }
    latencies.sort();
    println!(
        "cdc latency, MLflow set-alias call → proof accepted by devnet (5 samples, ms): {latencies:?}; median {} ms",
        latencies[latencies.len() / 2]
    );
    assert!(feed.alive() && worker.alive());
    feed.sigterm(STOP_WITHIN);
    worker.sigterm(STOP_WITHIN);
    println!("cdc test total {:.0} s", started.elapsed().as_secs_f64());
}

#[test]
fn debezium_mode_without_its_topics_is_a_clear_startup_error() {
    let worker = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
            .args(args)
            .env("ARIO_MLFLOW_KAFKA_BROKERS", "127.0.0.1:9")
            .env("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = worker(&["feed", "--from-debezium", "--to-kafka", EVENTS]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("give them with --kafka-topic") && err.contains("mlflow.public.runs"),
        "{err}"
    );
    let (code, err) = worker(&[
        "feed",
        "--from-debezium",
        "--kafka-topic",
        EVENTS,
        "--to-kafka",
        EVENTS,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("both a Debezium topic"), "{err}");
    println!("cdc: missing or clashing topics are exit 2 with the fix named");
}

#[test]
fn embedded_schemas_are_decoded_like_plain_json() {
    // Kafka Connect's JsonConverter with schemas.enable=true wraps every record in
    // {schema, payload}: the snapshot of a lifecycle anchors the same proofs.
    let Some((_one_at_a_time, mut lab)) = Lab::start(true) else {
        return;
    };
    let suffix = format!("s{}", std::process::id());
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("run.log");
    let (mut child, mut out) = lab.lifecycle(&["snapshot", &suffix]);
    let snap = until_step(&mut out, "done");
    assert!(child.wait().unwrap().success());
    let model = snap["model_name"].as_str().unwrap().to_string();
    lab.cdc.connect_start();
    let broker = Broker::attach(&lab.cdc.get("KAFKA_BOOTSTRAP"));
    let mut record = None;
    wait_for(
        "the snapshot in Kafka",
        Duration::from_secs(60),
        &[],
        || {
            record = broker
                .read_all("mlflow.public.model_versions")
                .into_iter()
                .find_map(|r| r.value);
            record.is_some()
        },
    );
    let record = record.unwrap_or_default();
    let record: Value = serde_json::from_slice(&record).unwrap();
    assert!(
        record["schema"].is_object() && record["payload"]["op"] == "r",
        "the records carry their schema: {record}"
    );
    let mut worker = lab.spawn(&work.path().join("state"), &RUN_DEBEZIUM, &log);
    let promotion = hash(&profile::promotion::payload(
        &model,
        "1",
        "None",
        "Production",
    ));
    let alias = hash(&profile::alias::payload(
        &model,
        "1",
        "snap",
        AliasAction::Set,
        None,
    ));
    wait_for(
        "the snapshot anchored",
        Duration::from_secs(240),
        &[&log],
        || {
            let envs = lab.envelopes();
            let n = |t: &str| of_type(&envs, t).len();
            n(profile::training::EVENT_TYPE) == 1
                && n(profile::registration::EVENT_TYPE) == 1
                && n(profile::prediction::EVENT_TYPE) == 1
                && envs
                    .iter()
                    .any(|(e, _)| e["payload_hash"] == promotion.as_str())
                && envs
                    .iter()
                    .any(|(e, _)| e["payload_hash"] == alias.as_str())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let twice: Vec<_> = counts(&lab.envelopes())
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "anchored more than once: {twice:?}");
    worker.sigterm(STOP_WITHIN);
    println!(
        "cdc (schemas.enable=true): the snapshot anchored {} proofs, each once",
        lab.envelopes().len()
    );
}

/// Renames and deleted-and-re-created models through CDC (issue 23): a rename is one proof, its
/// versions and aliases (which Debezium sees as deleted and created again under the new key)
/// are not new events, and proofs made under the old name verify as the new one; a model
/// deleted and re-created has its new version 1 anchored without a false "alias removed".
#[test]
fn cdc_with_the_shipped_setup_and_connector_follows_a_rename_and_a_recreated_model() {
    let Some((_one_at_a_time, mut lab)) = Lab::start_with(false, Some(CDC_TABLES_WITH_MODELS))
    else {
        return;
    };
    let topics = format!("{CDC_TOPICS},mlflow.public.registered_models");
    // The files deploy/debezium ships, as an operator would use them.
    lab.cdc.connect_start_shipped();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let log = work.path().join("worker.log");
    let mut worker = lab.spawn(
        &state,
        &[
            "run",
            "--source",
            "kafka",
            "--kafka-format",
            "debezium",
            "--kafka-topic",
            &topics,
            "--kafka-events-topic",
            "cdc.renames",
        ],
        &log,
    );
    let uri = lab.cdc.get("MLFLOW_TRACKING_URI");
    let messy = |args: &[&str]| {
        let mut cmd = Command::new(lab.venv.join("bin/python"));
        cmd.arg(mlflow_data("messy.py"))
            .args([uri.as_str(), lab.dn.handle.url(), "cdc"])
            .args(args)
            .env("REQUESTS_CA_BUNDLE", &lab.ca)
            .env("HOME", lab.home.path());
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "messy.py {args:?}: {}", show(&out));
        common::lab::last_json_line(&out.stdout)
    };
    let tag = |name: &str, version: &str, key: &str| -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf"])
            .arg(format!(
                "{uri}/api/2.0/mlflow/model-versions/get?name={name}&version={version}"
            ))
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["model_version"]["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
            .map(str::to_owned)
    };
    let (ren, re, renamed) = ("cdc-ren", "cdc-re", "cdc-renamed");
    messy(&["registry", ren, "Staging", "live"]);
    messy(&["registry", re, "Production", "champion"]);
    wait_for(
        "both models anchored through CDC",
        Duration::from_secs(180),
        &[&log],
        || {
            tag(ren, "1", "ario.alias_tx.live").is_some()
                && tag(re, "1", "ario.alias_tx.champion").is_some()
        },
    );
    let before: Vec<String> = lab
        .envelopes()
        .iter()
        .map(|(e, _)| e["event_id"].to_string())
        .collect();
    messy(&["rename", ren, renamed]);
    messy(&["recreate", re]);
    wait_for(
        "the renamed model's new version and the re-created model anchored",
        Duration::from_secs(180),
        &[&log],
        || {
            tag(renamed, "2", "ario.alias_tx.live").is_some()
                && tag(re, "1", "ario.registration_tx").is_some()
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    worker.sigterm(STOP_WITHIN);
    let all = lab.envelopes();
    let new: Vec<&Value> = all
        .iter()
        .map(|(e, _)| e)
        .filter(|e| !before.contains(&e["event_id"].to_string()))
        .collect();
    let of = |t: &str| new.iter().filter(|e| e["event_type"] == t).count();
    for e in &new {
        eprintln!("after: {} {}", e["event_type"], e["subject"]);
    }
    assert_eq!(of("model_renamed"), 1, "one rename proof");
    assert!(
        !new.iter().any(|e| e["subject"]["version"] == "1"
            && (e["subject"]["name"] == renamed || e["subject"]["name"] == ren)
            && e["event_type"] != "model_renamed"),
        "version 1's rows moved with the rename: nothing of it anchored again"
    );
    assert!(
        !new.iter().any(|e| e["subject"]["name"] == re
            && (e["event_type"] == "alias_changed" || e["event_type"] == "stage_transition")),
        "the deleted model's alias and stage are not anchored as changes"
    );
    let env = lab.env(&state);
    for target in [
        format!("{renamed}/1"),
        format!("{renamed}/2"),
        format!("{re}/1"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
            .args(["verify", "model", &target])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("ARIO_MLFLOW_GATEWAYS", &lab.gateway)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "verify model {target}: {}",
            show(&out)
        );
        if target.ends_with("/1") && target.starts_with(renamed) {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(&format!("anchored as {ren}/1")),
                "{}",
                show(&out)
            );
        }
    }
}

/// MLflow workspaces through CDC on PostgreSQL (issue 26): the registry's rows name their
/// workspace, runs and traces belong to one through their experiment; the CDC stage puts each
/// workspace's events on its own topic and the group anchors both lifecycles — the same model
/// name and version numbers in each — once per workspace, each verifying in its own.
#[test]
fn cdc_anchors_each_workspace_once_on_its_own_topic() {
    let Some((_one_at_a_time, mut lab)) = Lab::start_full(false, None, true) else {
        return;
    };
    let uri = lab.cdc.get("MLFLOW_TRACKING_URI");
    let other = "team-b";
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "Content-Type: application/json"])
        .args(["-d", &format!(r#"{{"name":"{other}"}}"#)])
        .arg(format!("{uri}/api/3.0/mlflow/workspaces"))
        .output()
        .unwrap();
    assert!(out.status.success(), "create workspace: {}", show(&out));
    lab.cdc.connect_start();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let log = work.path().join("worker.log");
    let mut args = RUN_DEBEZIUM;
    args[8] = "cdc.ws";
    let mut worker = lab.spawn(&state, &args, &log);
    let mut seeded = Vec::new();
    for workspace in [None, Some(other)] {
        let mut cmd = Command::new(lab.venv.join("bin/python"));
        cmd.arg(mlflow_data("scenario.py"))
            .args([uri.as_str(), "cdcws"])
            .env("HOME", lab.home.path());
        if let Some(w) = workspace {
            cmd.env("MLFLOW_WORKSPACE", w);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "scenario in {workspace:?}: {}",
            show(&out)
        );
        seeded.push(common::lab::last_json_line(&out.stdout));
    }
    let model = seeded[0]["model_name"].as_str().unwrap().to_string();
    let by_workspace = |lab: &Lab| -> BTreeMap<String, Vec<Value>> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for item in lab.dn.handle.items() {
            let bytes =
                std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
            let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
            let workspace = parsed
                .tags
                .iter()
                .find(|t| t.name == b"MLflow-Workspace")
                .map(|t| String::from_utf8_lossy(&t.value).into_owned())
                .unwrap_or_else(|| "default".into());
            out.entry(workspace)
                .or_default()
                .push(serde_json::from_slice(&parsed.data).unwrap());
        }
        out
    };
    let kinds = |envelopes: &[Value]| -> Vec<String> {
        let mut k: Vec<String> = envelopes
            .iter()
            .map(|e| e["event_type"].as_str().unwrap_or("").to_string())
            .collect();
        k.sort();
        k
    };
    let wanted = [
        profile::training::EVENT_TYPE,
        profile::dataset::EVENT_TYPE,
        profile::registration::EVENT_TYPE,
        profile::promotion::EVENT_TYPE,
        profile::alias::EVENT_TYPE,
        profile::prediction::EVENT_TYPE,
    ];
    wait_for(
        "both workspaces' lifecycles anchored through CDC",
        Duration::from_secs(240),
        &[&log],
        || {
            let all = by_workspace(&lab);
            ["default", other].iter().all(|w| {
                all.get(*w).is_some_and(|envs| {
                    let k = kinds(envs);
                    wanted.iter().all(|t| k.iter().any(|x| x == t))
                })
            })
        },
    );
    // Whatever is still in flight lands (a duplicate would by now).
    std::thread::sleep(Duration::from_secs(3));
    let all = by_workspace(&lab);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["default", other]);
    assert_eq!(
        kinds(&all["default"]),
        kinds(&all[other]),
        "the same lifecycle anchored in each workspace"
    );
    for (w, envelopes) in &all {
        let mut ids: Vec<String> = envelopes
            .iter()
            .map(|e| format!("{} {}", e["event_type"], e["subject"]))
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "an event of {w} anchored twice: {ids:?}");
    }
    println!(
        "cdc workspaces: {} proofs in default, {} in {other}",
        all["default"].len(),
        all[other].len()
    );
    // Each workspace's events on its own topic.
    let broker = Broker::attach(&lab.cdc.get("KAFKA_BOOTSTRAP"));
    let theirs = broker.read_all(&format!("cdc.ws.workspace.{other}"));
    assert!(
        !theirs.is_empty()
            && theirs
                .iter()
                .all(|r| r.header("ce_mlflowworkspace").as_deref() == Some(other)),
        "{other}'s topic carries its events only"
    );
    worker.sigterm(STOP_WITHIN);
    let mut env = lab.env(&state);
    env.push(("ARIO_MLFLOW_GATEWAYS", lab.gateway.clone()));
    for (workspace, ids) in [(None, &seeded[0]), (Some(other), &seeded[1])] {
        let mut env = env.clone();
        env.extend(workspace.map(|w| ("ARIO_MLFLOW_WORKSPACES", w.to_string())));
        for target in [
            vec!["verify", "model", &*format!("{model}/1")],
            vec!["verify", "run", ids["run"].as_str().unwrap()],
            vec!["verify", "trace", ids["trace"].as_str().unwrap()],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
                .args(&target)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{target:?} in {workspace:?}: {}",
                show(&out)
            );
        }
    }
}
