//! The real Apache Kafka broker (KRaft) of `../shared/KAFKA.md`, started through
//! `../shared/tools/kafka/kafka-local.sh` in a directory of its own, and rdkafka helpers to
//! look at topics and groups independently of the worker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A message to produce: key, headers, value.
pub type Raw = (Vec<u8>, Vec<(String, Vec<u8>)>, Vec<u8>);

/// One message as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Record {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A running broker; stopped (and its directory removed) when dropped.
pub struct Broker {
    pub bootstrap: String,
    pub dir: PathBuf,
    pub pid: u32,
    script: PathBuf,
}

fn script() -> PathBuf {
    super::shared_dir().join("tools/kafka/kafka-local.sh")
}

fn parse(out: &std::process::Output) -> (String, PathBuf, u32) {
    assert!(
        out.status.success(),
        "kafka-local.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("kafka-local.sh printed no {k}: {text}"))
            .to_string()
    };
    (
        get("KAFKA_BOOTSTRAP"),
        PathBuf::from(get("KAFKA_DIR")),
        get("KAFKA_PID").parse().unwrap_or(0),
    )
}

/// Starts a fresh broker.
pub fn start() -> Broker {
    let script = script();
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .unwrap();
    let (bootstrap, dir, pid) = parse(&out);
    Broker {
        bootstrap,
        dir,
        pid,
        script,
    }
}

impl Broker {
    /// A handle on a broker someone else runs (nothing stopped when dropped).
    pub fn attach(bootstrap: &str) -> Broker {
        Broker {
            bootstrap: bootstrap.to_string(),
            dir: PathBuf::new(),
            pid: 0,
            script: PathBuf::new(),
        }
    }

    /// SIGTERM, and wait until it is gone.
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .output();
    }

    /// Starts it again on its data (same port).
    pub fn start_again(&mut self) {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(["start", "--dir"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let (bootstrap, _, pid) = parse(&out);
        assert_eq!(bootstrap, self.bootstrap, "same address after a restart");
        self.pid = pid;
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4");
        c
    }

    /// Creates a topic (waiting until its metadata shows every partition).
    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            t = t.set(k, v);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt
            .block_on(admin.create_topics(&[t], &AdminOptions::new()))
            .unwrap();
        assert!(r.iter().all(|x| x.is_ok()), "create {name}: {r:?}");
        let probe: BaseConsumer = self.config().create().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(md) = probe.fetch_metadata(Some(name), Duration::from_secs(5)) {
                if md.topics().first().is_some_and(|t| {
                    t.error().is_none() && t.partitions().len() == partitions as usize
                }) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("topic {name} never showed {partitions} partitions");
    }

    /// Produces raw messages and waits for every ack.
    pub fn produce(&self, topic: &str, messages: &[Raw]) {
        let p: ThreadedProducer<DefaultProducerContext> = self
            .config()
            .set("message.max.bytes", "16777216")
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap();
        for (key, headers, value) in messages {
            let mut h = OwnedHeaders::new();
            for (k, v) in headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            let rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .headers(h)
                .key(key.as_slice())
                .payload(value.as_slice());
            p.send(rec).map_err(|(e, _)| e).unwrap();
        }
        p.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every committed message of `topic`, all partitions, in partition then offset order.
    pub fn read_all(&self, topic: &str) -> Vec<Record> {
        let c: BaseConsumer = self
            .config()
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let n = md.topics()[0].partitions().len();
        let mut tpl = TopicPartitionList::new();
        for p in 0..n as i32 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut eof = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while eof.len() < n && Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    eof.insert(p);
                }
                _ => {}
            }
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    }

    /// The group's lag on `topic` in messages: committed messages at or after the group's
    /// committed offset (transaction markers take offsets too, so the high watermark alone
    /// would count them).
    pub fn lag(&self, group: &str, topic: &str) -> usize {
        let c: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let n = md.topics()[0].partitions().len() as i32;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(topic, p);
        }
        let committed: BTreeMap<i32, i64> = c
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                (e.partition(), at)
            })
            .collect();
        self.read_all(topic)
            .iter()
            .filter(|r| r.offset >= committed.get(&r.partition).copied().unwrap_or(0))
            .count()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.pid == 0 {
            return;
        }
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .arg("--purge")
            .output();
    }
}
