//! Kafka against the real Apache Kafka 4.1.1 broker (KRaft, `../shared/KAFKA.md`), a real
//! MLflow and devnet:
//! * `feed` → a 6-partition topic → `run --source kafka` anchors every event exactly once, the
//!   plugin verifies a sample of each kind, duplicates (a second feed) are absorbed, and every
//!   malformed message lands in the dead-letter topic with its error headers while the good ones
//!   around it are anchored and the group's lag returns to 0;
//! * scale-out chaos: 3 instances (plus a 4th added and removed), SIGKILLed ≥ 10 times while
//!   events arrive: every event once on devnet, no fork, chains link to GENESIS;
//! * a broker restart mid-stream, recovered without restarting the worker;
//! * SASL_SSL with SCRAM-SHA-512: the right credentials work, a wrong password is a clear
//!   startup error that never shows the password.
//!
//! The tests share one machine's CPU, so they run one at a time (a lock), each on its own broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::kafka::{self as kafka, Broker};
use common::lab::{scenario, Lab, SEED_B64};
use common::mlflow::venv;
use common::process::{free_port, Proc};
use common::run::{show, worker};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn worker_env(lab: &Lab, broker: &Broker, state: &Path) -> Vec<(&'static str, String)> {
    let mut env = lab.worker_env(state);
    env.extend([
        ("ARIO_MLFLOW_KAFKA_BROKERS", broker.bootstrap.clone()),
        (
            "RUST_LOG",
            std::env::var("KAFKA_TEST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
        ),
    ]);
    env
}

/// The worker as a service (its listener on a port of its own), killed when dropped.
fn spawn(env: &[(&str, String)], args: &[&str], log: &Path) -> Proc {
    // A port of its own unless the test gave one (later entries win).
    let mut all = vec![("ARIO_MLFLOW_LISTEN", "127.0.0.1:0".to_string())];
    all.extend_from_slice(env);
    Proc::worker(&all, args, log)
}

fn sigterm(worker: &mut Proc) {
    worker.sigterm(Duration::from_secs(40));
}

/// What devnet holds: envelopes per (event type, subject, payload hash), and per chain.
struct Anchored {
    envelopes: Vec<Value>,
    per_event: BTreeMap<String, usize>,
}

fn anchored(lab: &Lab) -> Anchored {
    let mut envelopes = Vec::new();
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for item in lab.dn.handle.items() {
        let bytes =
            std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
        let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
        let env: Value = serde_json::from_slice(&parsed.data).unwrap();
        let key = format!(
            "{} {} {}",
            env["event_type"], env["subject"], env["payload_hash"]
        );
        *per_event.entry(key).or_default() += 1;
        envelopes.push(env);
    }
    Anchored {
        envelopes,
        per_event,
    }
}

/// Training envelopes: no two share a `previous_hash`, and each chain walks back to GENESIS.
/// Returns the number of chains and their tips (payload hashes).
fn check_training_chains(envelopes: &[Value]) -> BTreeSet<String> {
    let training: Vec<&Value> = envelopes
        .iter()
        .filter(|e| e["event_type"] == "training_complete")
        .collect();
    let mut by_prev: BTreeMap<String, usize> = BTreeMap::new();
    let hashes: BTreeSet<String> = training
        .iter()
        .map(|e| e["payload_hash"].as_str().unwrap().to_string())
        .collect();
    for e in &training {
        let prev = e["previous_hash"].as_str().unwrap().to_string();
        if prev != "GENESIS" {
            assert!(
                hashes.contains(&prev),
                "a training envelope links to {prev}, which nothing anchored"
            );
        }
        *by_prev.entry(prev).or_default() += 1;
    }
    let forks: Vec<_> = by_prev
        .iter()
        .filter(|(p, n)| p.as_str() != "GENESIS" && **n > 1)
        .collect();
    assert!(forks.is_empty(), "forked chains: {forks:?}");
    let linked: BTreeSet<&String> = by_prev.keys().collect();
    hashes
        .iter()
        .filter(|h| !linked.contains(h))
        .cloned()
        .collect()
}

fn wait_for(what: &str, timeout: Duration, logs: &[&Path], done: impl FnMut() -> bool) {
    common::run::wait_for(what, timeout, Duration::from_millis(250), logs, done)
}

fn cloudevent(key: &str, ce_type: &str, body: &str) -> kafka::Raw {
    (
        key.as_bytes().to_vec(),
        vec![
            ("ce_specversion".into(), b"1.0".to_vec()),
            ("ce_id".into(), b"test".to_vec()),
            ("ce_source".into(), b"tests/kafka.rs".to_vec()),
            ("ce_type".into(), ce_type.as_bytes().to_vec()),
            ("content-type".into(), b"application/json".to_vec()),
        ],
        body.as_bytes().to_vec(),
    )
}

#[test]
fn feed_and_one_consumer_anchor_everything_once_and_dead_letter_the_bad_messages() {
    let _one = serial();
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let broker = kafka::start();
    let ids = scenario(&lab.server, &venv, "kafka");
    let s = |k: &str| ids[k].as_str().unwrap().to_string();
    let topic = "events-e2e";
    // 6 partitions; big enough messages for the 1 MB poison one.
    broker.create_topic(topic, 6, &[("max.message.bytes", "4194304")]);
    let state = lab.home.path().join("feed-state");
    let env = worker_env(&lab, &broker, &state);

    // Bad messages before the good ones…
    let bad: Vec<kafka::Raw> = vec![
        cloudevent("rm/x", "io.ario.mlflow.model_registered", "not json {"),
        cloudevent(
            "rm/x",
            "io.ario.mlflow.model_deleted",
            r#"{"kind":"model_version_created","name":"x","version":"1","schema_version":1}"#,
        ),
        cloudevent(
            "rm/x",
            "io.ario.mlflow.model_registered",
            r#"{"kind":"model_version_created","name":"x","schema_version":1}"#,
        ),
        cloudevent(
            "rm/x",
            "io.ario.mlflow.model_registered",
            &format!(
                r#"{{"kind":"model_version_created","name":"x","version":"1","schema_version":1,"pad":"{}"}}"#,
                "a".repeat(70_000)
            ),
        ),
        cloudevent(
            "rm/x",
            "io.ario.mlflow.model_registered",
            r#"{"kind":"model_version_created","name":"x","version":"1","schema_version":9}"#,
        ),
        (b"junk".to_vec(), Vec::new(), {
            let mut v = vec![0u8; 1 << 20];
            for (i, b) in v.iter_mut().enumerate() {
                *b = (i.wrapping_mul(2654435761) >> 13) as u8;
            }
            v
        }),
    ];
    let expected_classes = [
        "InvalidJson",
        "UnknownEventType",
        "MissingIdentity",
        "MessageTooLarge",
        "UnsupportedSchemaVersion",
        "MessageTooLarge",
    ];
    let produce = |msgs: &[kafka::Raw]| broker.produce(topic, msgs);
    produce(&bad[..3]);
    // …the feed's good ones…
    let out = worker(&env, &["feed", "--to-kafka", topic, "--once"]);
    assert!(out.status.success(), "feed: {}", show(&out));
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    for l in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("WARN"))
    {
        println!("feed: {l}");
    }
    // …more bad ones, a valid event for a model MLflow does not have, and a second feed (a
    // fresh store: every event again, as two feeds for availability would produce).
    produce(&bad[3..]);
    produce(&[cloudevent(
        "rm/no-such-model",
        "io.ario.mlflow.model_registered",
        r#"{"kind":"model_version_created","name":"no-such-model","version":"1","schema_version":1}"#,
    )]);
    let env2 = worker_env(&lab, &broker, &lab.home.path().join("feed-state-2"));
    let out = worker(
        &env2,
        &[
            "feed",
            "--to-kafka",
            topic,
            "--once",
            "--kafka-mode",
            "structured",
        ],
    );
    assert!(out.status.success(), "second feed: {}", show(&out));
    let fed_records = broker.read_all(topic);
    let fed = fed_records.len();

    let log = lab.home.path().join("consumer.log");
    let port = free_port();
    let mut consumer_env = worker_env(&lab, &broker, &lab.home.path().join("run-state"));
    consumer_env.push(("ARIO_MLFLOW_LISTEN", format!("127.0.0.1:{port}")));
    consumer_env.push(("ARIO_MLFLOW_HEALTH_INTERVAL", "0.5".into()));
    let mut run = spawn(
        &consumer_env,
        &["run", "--source", "kafka", "--kafka-topic", topic],
        &log,
    );
    // 2 training + 2 datasets + registration + promotion + alias + 3 predictions (the NaN run
    // parks: its payload cannot be canonicalized).
    let want = 10;
    wait_for(
        "every event anchored",
        Duration::from_secs(
            std::env::var("KAFKA_TEST_WAIT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(180),
        ),
        &[&log],
        || lab.dn.handle.items().len() >= want,
    );
    wait_for(
        "the group's lag back to 0",
        Duration::from_secs(60),
        &[&log],
        || broker.lag("ario-mlflow-worker", topic) == 0,
    );
    // The lag gauges are refreshed every 5 s: wait until they show what is asserted below.
    let addr = format!("127.0.0.1:{port}");
    wait_for(
        "the consumer's gauges: 6 partitions at lag 0, every event counted",
        Duration::from_secs(30),
        &[&log],
        || {
            common::metrics::scrape(&addr).is_some_and(|t| {
                let lag = "ario_mlflow_worker_kafka_consumer_lag";
                t.lines()
                    .filter(|l| l.starts_with(&format!("{lag}{{")))
                    .count()
                    == 6
                    && common::metrics::sum(&t, lag, &[("topic", topic)]) == 0.0
                    && common::metrics::sum(
                        &t,
                        "ario_mlflow_worker_events_anchored_total",
                        &[("source", "kafka")],
                    ) >= want as f64
            })
        },
    );
    // The listener of a consumer: ready with its partitions, and its counters match.
    let get =
        |path: &str| common::run::http_get(&lab.rt, &format!("http://127.0.0.1:{port}{path}"));
    // The readiness probe reads the owned count the lag report stores (every 5 s) on its own
    // round (every 0.5 s here): ready within a round or two of the gauges.
    let mut answer = (0, String::new());
    wait_for(
        "/readyz 200 with the partitions owned",
        Duration::from_secs(15),
        &[&log],
        || {
            answer = get("/readyz");
            answer.0 == 200
        },
    );
    let (status, ready) = answer;
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["kafka"]["ok"], true, "{ready}");
    assert!(
        ready["checks"].get("store").is_none(),
        "no sled store in Kafka mode: {ready}"
    );
    let (_, metrics) = get("/metrics");
    let sum = |name: &str, labels: &[(&str, &str)]| common::metrics::sum(&metrics, name, labels);
    assert_eq!(
        sum(
            "ario_mlflow_worker_events_anchored_total",
            &[("source", "kafka")]
        ),
        want as f64,
        "{metrics}"
    );
    assert_eq!(
        sum("ario_mlflow_worker_kafka_dead_letters_total", &[]),
        bad.len() as f64,
        "{metrics}"
    );
    assert_eq!(
        sum("ario_mlflow_worker_kafka_assigned_partitions", &[]),
        6.0,
        "{metrics}"
    );
    let lag_lines = metrics
        .lines()
        .filter(|l| l.starts_with("ario_mlflow_worker_kafka_consumer_lag{"))
        .count();
    assert_eq!(lag_lines, 6, "{metrics}");
    assert_eq!(
        sum("ario_mlflow_worker_kafka_consumer_lag", &[("topic", topic)]),
        0.0,
        "{metrics}"
    );
    println!("kafka e2e: /readyz ready with 6 partitions; /metrics: {want} anchored from kafka, {} dead letters, lag 0", bad.len());
    // Job gauges in Kafka mode: summed over the owned partitions' stores (the NaN run parked).
    wait_for(
        "the job gauges: the parked NaN run",
        Duration::from_secs(15),
        &[&log],
        || {
            common::metrics::scrape(&addr).is_some_and(|t| {
                common::metrics::sum(&t, "ario_mlflow_worker_jobs", &[("state", "parked")]) == 1.0
            })
        },
    );
    // `status` and `retry` from the running consumer: its state dir has no store (the stores
    // are its partitions'), so both ask its listener, with the secret from its state dir.
    let out = worker(&consumer_env, &["status", "--json"]);
    assert!(out.status.success(), "status: {}", show(&out));
    let live: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(live["mode"], "kafka", "{live}");
    let stores = live["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 6, "one store per owned partition: {live}");
    let done: u64 = stores
        .iter()
        .flat_map(|s| s["counts"].as_object().unwrap().values())
        .map(|states| states["done"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(done, want as u64, "{live}");
    let parked: Vec<&Value> = stores
        .iter()
        .flat_map(|s| s["parked"].as_array().unwrap())
        .collect();
    assert_eq!(parked.len(), 1, "the NaN run: {live}");
    let text = worker(&consumer_env, &["status"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("(kafka mode): 6 store(s)") && text.contains("PARKED"),
        "{text}"
    );
    let out = worker(&consumer_env, &["retry", "--all-parked"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("re-queued 1 job(s)"),
        "retry: {}",
        show(&out)
    );
    // A wrong secret is refused (401), named, exit 2.
    let wrong = lab.home.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret").unwrap();
    let out = worker(
        &consumer_env,
        &[
            "status",
            "--management-secret-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("401"), "{}", show(&out));
    // The re-queued run is resolved again and parks again (its cause is in its payload).
    wait_for(
        "the retried NaN run parked again",
        Duration::from_secs(30),
        &[&log],
        || {
            let out = worker(&consumer_env, &["status", "--json"]);
            serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| {
                v["stores"].as_array().is_some_and(|s| {
                    s.iter()
                        .flat_map(|s| s["parked"].as_array().unwrap())
                        .count()
                        == 1
                })
            })
        },
    );
    println!("kafka e2e: status from the running consumer: 6 partition stores, {done} done, 1 parked; retry re-queued it through the listener");
    sigterm(&mut run);
    let text = std::fs::read_to_string(&log).unwrap();
    let a = anchored(&lab);
    println!(
        "kafka e2e: {fed} messages in, {} items anchored, {} dead-letter log lines",
        a.envelopes.len(),
        text.matches("kafka: dead letter").count()
    );
    assert_eq!(a.envelopes.len(), want, "{:?}\n{text}", a.per_event);
    assert!(
        a.per_event.values().all(|n| *n == 1),
        "duplicates: {:?}",
        a.per_event
    );
    check_training_chains(&a.envelopes);

    // The dead-letter topic holds exactly the bad messages, with their error headers.
    let dlq = broker.read_all(&format!("{topic}.dlq"));
    let classes: Vec<String> = dlq
        .iter()
        .map(|r| {
            r.header("__ario.errors.exception.class")
                .unwrap_or_default()
        })
        .collect();
    let mut got = classes.clone();
    got.sort();
    let mut expected: Vec<String> = expected_classes.iter().map(|c| c.to_string()).collect();
    expected.sort();
    assert_eq!(got, expected, "dead letters: {classes:?}");
    for r in &dlq {
        for h in [
            "topic",
            "partition",
            "offset",
            "exception.message",
            "timestamp",
        ] {
            assert!(
                r.header(&format!("__ario.errors.{h}"))
                    .is_some_and(|v| !v.is_empty()),
                "dead letter without __ario.errors.{h}: {:?}",
                r.headers.keys()
            );
        }
        assert_eq!(r.header("__ario.errors.topic").as_deref(), Some(topic));
        let original = bad
            .iter()
            .find(|(k, _, v)| Some(k) == r.key.as_ref() && Some(v) == r.value.as_ref());
        assert!(
            original.is_some(),
            "a dead letter keeps the original key and value"
        );
    }
    assert_eq!(
        text.matches("kafka: dead letter").count(),
        bad.len(),
        "one log line per dead letter"
    );
    assert!(
        lab.dn.handle.items().len() == want,
        "the event for a model MLflow does not have anchored nothing"
    );

    // The plugin verifies what was anchored from Kafka.
    let plugin_env = [
        ("REQUESTS_CA_BUNDLE", lab.ca.display().to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("HOME", lab.home.path().display().to_string()),
        ("ARIO_MLFLOW_GATEWAYS", lab.gateway.clone()),
        ("MLFLOW_TRACKING_URI", lab.server.uri.clone()),
        ("NO_COLOR", "1".to_string()),
    ];
    let mv = format!("{}/1", s("model_name"));
    for args in [
        vec!["verify", "run", s("run").leak() as &str],
        vec!["verify", "model", mv.as_str()],
        vec!["verify", "trace", s("trace").leak()],
        // The plugin's audit walks the version's stages: registration, promotion, alias.
        vec!["audit", mv.as_str()],
    ] {
        let out = common::plugin::run(&venv, &plugin_env, &args);
        assert!(out.status.success(), "plugin {args:?}: {}", show(&out));
    }
}

/// Starts `tests/data/mlflow/seed_chains.py` (CHAINS experiments x PER_CHAIN finished runs with a
/// dataset each, DELAY s apart) in the background; its JSON line comes with its output.
fn seed_chains(
    venv: &Path,
    lab: &Lab,
    chains: usize,
    per_chain: usize,
    suffix: &str,
    delay: &str,
) -> Child {
    Command::new(venv.join("bin/python"))
        .arg(common::run::mlflow_data("seed_chains.py"))
        .args([
            lab.server.uri.as_str(),
            &chains.to_string(),
            &per_chain.to_string(),
            suffix,
            delay,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn experiment_tag(uri: &str, id: &str, key: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf"])
        .arg(format!(
            "{uri}/api/2.0/mlflow/experiments/get?experiment_id={id}"
        ))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["experiment"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str().map(str::to_string))
}

#[test]
fn three_instances_killed_again_and_again_anchor_every_event_once_without_a_fork() {
    let _one = serial();
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let broker = kafka::start();
    let topic = "events-chaos";
    broker.create_topic(topic, 6, &[]);
    let dir = lab.home.path().to_path_buf();
    let base = worker_env(&lab, &broker, &dir.join("unused-state"));
    let feed_env = worker_env(&lab, &broker, &dir.join("feed-state"));
    let feed_log = dir.join("feed.log");
    let mut feed = spawn(
        &feed_env,
        &["feed", "--to-kafka", topic, "--poll-interval", "1"],
        &feed_log,
    );
    let instance = |i: usize| {
        let log = dir.join(format!("worker-{i}.log"));
        let id = format!("i{i}");
        let child = spawn(
            &base,
            &[
                "run",
                "--source",
                "kafka",
                "--kafka-topic",
                topic,
                "--kafka-instance-id",
                &id,
            ],
            &log,
        );
        (child, log)
    };
    let mut workers: Vec<(Proc, std::path::PathBuf)> = (0..3).map(instance).collect();
    // Events arrive while the instances run (and die): 24 chains x 11 runs, each run a
    // training and a dataset event.
    let (chains, per_chain) = (24, 11);
    let seeder = seed_chains(&venv, &lab, chains, per_chain, "chaos", "0.02");
    let expected = 2 * chains * per_chain;
    let mut kills = 0;
    let mut fourth: Option<(Proc, std::path::PathBuf)> = None;
    let started = Instant::now();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while kills < 12 || (kills < 20 && lab.dn.handle.items().len() < expected / 2) {
        std::thread::sleep(Duration::from_millis(2000 + next() % 2000));
        let victim = (next() % 3) as usize;
        workers[victim].0.kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(300 + next() % 1000));
        let log = workers[victim].1.clone();
        let (child, _) = instance(victim);
        workers[victim] = (child, log);
        if kills == 3 {
            fourth = Some(instance(3));
        }
        if kills == 7 {
            if let Some((mut c, _)) = fourth.take() {
                sigterm(&mut c);
            }
        }
        println!(
            "chaos: kill {kills} (instance {victim}) at {:.0} s, {} items anchored",
            started.elapsed().as_secs_f64(),
            lab.dn.handle.items().len()
        );
        if started.elapsed() > Duration::from_secs(400) {
            break;
        }
    }
    let seeded = seeder.wait_with_output().unwrap();
    assert!(seeded.status.success(), "seeder: {}", show(&seeded));
    let seeded = common::lab::last_json_line(&seeded.stdout);
    let log_paths: Vec<std::path::PathBuf> = workers.iter().map(|(_, l)| l.clone()).collect();
    let logs: Vec<&Path> = log_paths.iter().map(|l| l.as_path()).collect();
    wait_for(
        "every event anchored after the chaos",
        Duration::from_secs(300),
        &logs,
        || lab.dn.handle.items().len() >= expected,
    );
    wait_for(
        "the group's lag back to 0",
        Duration::from_secs(120),
        &logs,
        || broker.lag("ario-mlflow-worker", topic) == 0,
    );
    std::thread::sleep(Duration::from_secs(5));
    for (c, _) in workers.iter_mut() {
        sigterm(c);
    }
    sigterm(&mut feed);

    let a = anchored(&lab);
    let duplicates: Vec<_> = a.per_event.iter().filter(|(_, n)| **n > 1).collect();
    let tips = check_training_chains(&a.envelopes);
    let assigned: usize = logs
        .iter()
        .map(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .matches("kafka: partitions assigned")
                .count()
        })
        .sum::<usize>()
        + std::fs::read_to_string(dir.join("worker-3.log"))
            .unwrap_or_default()
            .matches("kafka: partitions assigned")
            .count();
    println!(
        "chaos: {kills} SIGKILLs + a 4th instance added and removed, {assigned} assignments, {} events seeded, {} items on devnet, {} duplicates, 0 forks, {} chains, {:.0} s",
        seeded["events"],
        a.envelopes.len(),
        duplicates.len(),
        tips.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 10, "{kills} kills");
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert_eq!(a.envelopes.len(), expected, "every event exactly once");
    assert_eq!(tips.len(), chains, "one tip per chain");
    // The MLflow head tags name the tips.
    let heads: BTreeSet<String> = seeded["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            experiment_tag(
                &lab.server.uri,
                e.as_str().unwrap(),
                "ario.last_training_hash",
            )
        })
        .collect();
    assert_eq!(
        heads, tips,
        "each experiment's ario.last_training_hash is its chain's tip"
    );
    assert!(
        broker.read_all(&format!("{topic}.dlq")).is_empty(),
        "no dead letters"
    );
}

#[test]
fn a_broker_restart_mid_stream_is_survived_without_restarting_the_worker() {
    let _one = serial();
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let mut broker = kafka::start();
    let topic = "events-restart";
    let dir = lab.home.path().to_path_buf();
    // The consumer starts before the topic exists (the feed that creates it comes later, as
    // in a compose or Helm start): it waits, and its listener says why.
    let log = dir.join("worker.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut run_env = worker_env(&lab, &broker, &dir.join("run-state"));
    run_env.push(("ARIO_MLFLOW_LISTEN", addr.clone()));
    let mut run = spawn(
        &run_env,
        &["run", "--source", "kafka", "--kafka-topic", topic],
        &log,
    );
    wait_for(
        "the consumer waiting for its topic",
        Duration::from_secs(60),
        &[&log],
        || run.log().contains("Kafka is not usable yet"),
    );
    let readyz = common::run::http_get(&lab.rt, &format!("http://{addr}/readyz"));
    assert_eq!(readyz.0, 503, "{}", readyz.1);
    assert!(
        readyz.1.contains("does not exist") && readyz.1.contains(topic),
        "{}",
        readyz.1
    );
    assert!(run.alive(), "the consumer gave up: {}", run.log());
    let feed_log = dir.join("feed.log");
    // The feed with its own listener: what the dead-feed alert scrapes.
    let feed_addr = format!("127.0.0.1:{}", free_port());
    let mut feed = spawn(
        &worker_env(&lab, &broker, &dir.join("feed-state")),
        &[
            "feed",
            "--to-kafka",
            topic,
            "--poll-interval",
            "1",
            "--listen",
            &feed_addr,
        ],
        &feed_log,
    );
    let (chains, per_chain) = (6, 10);
    let seeder = seed_chains(&venv, &lab, chains, per_chain, "restart", "0.1");
    let expected = 2 * chains * per_chain;
    wait_for(
        "the first events anchored",
        Duration::from_secs(120),
        &[&log],
        || lab.dn.handle.items().len() >= 10,
    );
    let last_pass = || {
        let text = common::metrics::scrape(&feed_addr).unwrap_or_default();
        let gauge = "ario_mlflow_worker_feed_last_pass_timestamp_seconds";
        let v = common::metrics::sum(&text, gauge, &[("stage", "poll"), ("workspace", "default")]);
        let ok_passes = common::metrics::sum(
            &text,
            "ario_mlflow_worker_poll_passes_total",
            &[("outcome", "ok")],
        );
        (v, ok_passes)
    };
    let (first, passes) = last_pass();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - first).abs() < 30.0 && passes >= 1.0,
        "the feed's last pass ({first}) is recent and counted ({passes}): {}",
        feed.log()
    );
    wait_for(
        "the feed's last-pass gauge to advance",
        Duration::from_secs(30),
        &[&feed_log],
        || last_pass().0 > first,
    );
    let probe = |path: &str| common::run::http_get(&lab.rt, &format!("http://{feed_addr}{path}"));
    let (healthz, readyz) = (probe("/healthz"), probe("/readyz"));
    assert_eq!(healthz.0, 200, "{}", healthz.1);
    assert!(
        readyz.0 == 200 && readyz.1.contains("\"mlflow\""),
        "the feed ready (MLflow checked): {readyz:?}"
    );
    let before = lab.dn.handle.items().len();
    broker.stop();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let during = lab.dn.handle.items().len();
    broker.start_again();
    println!(
        "restart: {before} anchored before the broker stopped, {during} after {:.0} s down",
        down.elapsed().as_secs_f64()
    );
    let seeded = seeder.wait_with_output().unwrap();
    assert!(seeded.status.success(), "seeder: {}", show(&seeded));
    wait_for(
        "every event anchored after the restart",
        Duration::from_secs(300),
        &[&log, &feed_log],
        || lab.dn.handle.items().len() >= expected,
    );
    wait_for(
        "the group's lag back to 0",
        Duration::from_secs(120),
        &[&log],
        || broker.lag("ario-mlflow-worker", topic) == 0,
    );
    assert!(
        run.alive(),
        "the worker kept running through the broker restart"
    );
    // Whatever would come twice (a redelivery after the restart) has come once all is taken.
    common::metrics::settle_consumer(&addr, Duration::from_secs(60), || {
        broker.lag("ario-mlflow-worker", topic)
    });
    sigterm(&mut run);
    sigterm(&mut feed);
    let a = anchored(&lab);
    assert!(
        a.per_event.values().all(|n| *n == 1),
        "duplicates: {:?}",
        a.per_event
    );
    assert_eq!(a.envelopes.len(), expected);
    assert_eq!(check_training_chains(&a.envelopes).len(), chains);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "restart: all {expected} events once; {} rebuilds logged",
        text.matches("rebuilding partition state").count()
    );
}

/// A broker with a SASL_SSL listener (SCRAM-SHA-512, a certificate from a CA made here) beside
/// its PLAINTEXT one, started from the jars `kafka-local.sh install` fetched.
struct SaslBroker {
    child: Child,
    plaintext: String,
    sasl: String,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sasl_broker(user: &str, password: &str) -> SaslBroker {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let out = Command::new("bash")
        .arg(common::shared_dir().join("tools/kafka/kafka-local.sh"))
        .arg("install")
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", show(&out));
    let cache = std::env::var("KAFKA_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kafka-4.1.1")
        });
    let dir = tempfile::tempdir().unwrap();
    // The CA and the broker's certificate.
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose issuer equals its subject reads as self-signed to OpenSSL.
    ca.distinguished_name
        .push(DnType::CommonName, "kafka test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let keystore = dir.path().join("broker.pem");
    std::fs::write(
        &keystore,
        format!("{}{}", leaf_key.serialize_pem(), leaf_cert.pem()),
    )
    .unwrap();
    let (p, s, c) = (free_port(), free_port(), free_port());
    let data = dir.path().join("data");
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "process.roles=broker,controller\nnode.id=1\n\
listeners=PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{s},CONTROLLER://127.0.0.1:{c}\n\
advertised.listeners=PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{s}\n\
controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT\n\
controller.quorum.bootstrap.servers=127.0.0.1:{c}\nlog.dirs={}\n\
sasl.enabled.mechanisms=SCRAM-SHA-512\n\
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
ssl.keystore.type=PEM\nssl.keystore.location={}\n\
offsets.topic.replication.factor=1\noffsets.topic.num.partitions=1\n\
transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\ntransaction.state.log.num.partitions=1\n\
share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
group.initial.rebalance.delay.ms=0\nlog.cleaner.dedupe.buffer.size=16777216\n",
            data.display(),
            keystore.display()
        ),
    )
    .unwrap();
    let java = |args: &[&str]| {
        let mut cmd = Command::new("java");
        cmd.arg(format!(
            "-Dlog4j2.configurationFile={}",
            cache.join("log4j2.properties").display()
        ))
        .arg(format!(
            "-Dkafka.logs.dir={}",
            dir.path().join("logs").display()
        ))
        .arg("-cp")
        .arg(format!("{}/lib/*", cache.display()))
        .args(args);
        cmd
    };
    let id = java(&["kafka.tools.StorageTool", "random-uuid"])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    // SCRAM credentials made by the broker's own tooling, at format time.
    let scram = format!("SCRAM-SHA-512=[name={user},password={password}]");
    let out = java(&[
        "kafka.tools.StorageTool",
        "format",
        "-t",
        &id,
        "-c",
        props.to_str().unwrap(),
        "--standalone",
        "--add-scram",
        &scram,
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "format: {}", show(&out));
    let child = java(&["kafka.Kafka", props.to_str().unwrap()])
        .env("KAFKA_HEAP_OPTS", "-Xmx512m")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let plaintext = format!("127.0.0.1:{p}");
    // Ready when the PLAINTEXT listener answers a metadata request.
    let probe: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &plaintext)
        .create()
        .unwrap();
    wait_for("the SASL broker", Duration::from_secs(90), &[], || {
        use rdkafka::consumer::Consumer;
        probe
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty())
    });
    SaslBroker {
        child,
        plaintext,
        sasl: format!("127.0.0.1:{s}"),
        ca: ca_path,
        _dir: dir,
    }
}

#[test]
fn sasl_ssl_with_scram_works_and_a_wrong_password_is_a_clear_startup_error() {
    let _one = serial();
    let Some(venv) = venv() else { return };
    let password = "s3cret-Pa55word-never-logged";
    let sasl = start_sasl_broker("ario", password);
    let lab = Lab::start(&venv);
    let topic = "events-sasl";
    // Topic made over PLAINTEXT (the test's own admin), used over SASL_SSL.
    let plain = Broker::attach(&sasl.plaintext);
    plain.create_topic(topic, 3, &[]);
    let dir = lab.home.path().to_path_buf();
    let env_with = |pw: &str| {
        let mut env = worker_env(&lab, &plain, &dir.join("state"));
        env.retain(|(k, _)| *k != "ARIO_MLFLOW_KAFKA_BROKERS");
        env.push(("ARIO_MLFLOW_KAFKA_BROKERS", sasl.sasl.clone()));
        env.push(("ARIO_MLFLOW_KAFKA_SASL_USERNAME", "ario".into()));
        env.push(("ARIO_MLFLOW_KAFKA_SASL_PASSWORD", pw.into()));
        env
    };
    let sasl_args = |cmd: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        for p in [
            "security.protocol=SASL_SSL".to_string(),
            "sasl.mechanism=SCRAM-SHA-512".to_string(),
            format!("ssl.ca.location={}", sasl.ca.display()),
        ] {
            a.push("--kafka-property".into());
            a.push(p);
        }
        a
    };
    // The right credentials: the consumer takes its partitions over SASL_SSL.
    let log = dir.join("sasl.log");
    let args = sasl_args(&["run", "--source", "kafka", "--kafka-topic", topic]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = spawn(&env_with(password), &args, &log);
    wait_for(
        "partitions taken over SASL_SSL",
        Duration::from_secs(60),
        &[&log],
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("kafka: took over partitions")
        },
    );
    let feed_args = sasl_args(&["feed", "--to-kafka", topic, "--once"]);
    let feed_args: Vec<&str> = feed_args.iter().map(String::as_str).collect();
    let fed = worker(&env_with(password), &feed_args);
    assert!(fed.status.success(), "feed over SASL_SSL: {}", show(&fed));
    sigterm(&mut run);
    // A wrong password: exit 2 at startup, naming the cause, never the password.
    let wrong = "wr0ng-Pa55word-never-logged";
    let started = Instant::now();
    let out = worker(&env_with(wrong), &args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "sasl: wrong password → exit {:?} after {:.1} s: {}",
        out.status.code(),
        started.elapsed().as_secs_f64(),
        text.lines()
            .filter(|l| l.starts_with("error:"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    let error_line = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error_line.contains("authentication"),
        "the error names the cause: {text}"
    );
    let all_logs = format!(
        "{text}{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        !all_logs.contains(password) && !all_logs.contains(wrong),
        "a password was logged"
    );
}
