//! The deploy artifacts, checked with the real tools this machine runs (../shared/DEPLOY.md;
//! `.ci/run` installs them through `deploy/scripts/install-tools.sh`): the image builds and
//! runs as a non-root user and its HEALTHCHECK passes against a real MLflow; the compose file
//! validates; the Helm chart lints and renders both modes; the systemd unit verifies; the alert
//! rules pass `promtool test rules`; the dashboard queries only documented metrics.
//!
//! A missing tool fails the test under CI (`CI` set) and is reported and skipped elsewhere.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::lab::SEED_B64;
use common::mlflow::{venv, MlflowServer};
use common::run::show;
use common::tools::tool;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run a tool")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", show(out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn alert_rules_check_and_their_unit_tests_pass() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    let out = run(Command::new(&promtool)
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir));
    let text = ok(&out, "promtool check rules");
    let rules = std::fs::read_to_string(dir.join("alerts.yml"))
        .unwrap()
        .matches("- alert:")
        .count();
    assert!(rules >= 13, "the alerts, the dead-feed one included");
    assert!(
        text.contains(&format!("SUCCESS: {rules} rules found")),
        "{text}"
    );
    let out = run(Command::new(&promtool)
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&dir));
    let text = ok(&out, "promtool test rules");
    assert!(text.contains("SUCCESS"), "{text}");
    let out = run(Command::new(&promtool)
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir));
    // The compose file mounts the rules at /etc/prometheus; here they sit beside the config.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("/etc/prometheus/alerts.yml"),
        "promtool check config: {}",
        show(&out)
    );
    println!("promtool: {rules} rules, unit tests pass");
}

/// GitHub's anchor of a Markdown heading: lowercase, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_has_a_runbook_section() {
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let runbook = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let sections: Vec<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(slug)
        .collect();
    let names = alerts
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let urls: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("runbook_url: "))
        .collect();
    assert_eq!(urls.len(), names, "every alert carries a runbook_url");
    for url in urls {
        let url = url.trim_matches('"');
        let (page, section) = url.split_once('#').expect("a section anchor");
        assert!(page.ends_with("docs/operations.md"), "{url}");
        assert!(
            sections.iter().any(|s| s == section),
            "{url}: no such section in {sections:?}"
        );
    }
}

/// `config check` of the `config.toml` a rendered chart holds; its output.
fn config_check(rendered: &str, what: &str) -> String {
    let config: String = rendered
        .split("config.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &config).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
        .args(["config", "check", "--config"])
        .arg(file.path()));
    ok(
        &out,
        &format!("config check of the chart's config.toml ({what}):\n{config}"),
    )
}

/// `kubeconform -strict` of a rendered chart against the Kubernetes 1.31 schemas
/// `deploy/scripts/install-tools.sh` localizes (CRDs skipped); a document with an unknown field
/// must fail, so the schemas are really read.
fn kubeconform(rendered: &str, what: &str) {
    let Some(bin) = tool("kubeconform") else {
        return;
    };
    let schemas = bin.parent().unwrap().parent().unwrap().join("k8s-schemas");
    assert!(
        schemas.join("v1.31.0-local-strict").is_dir(),
        "{} is missing (deploy/scripts/install-tools.sh writes it)",
        schemas.display()
    );
    let check = |docs: &str| {
        let mut child = Command::new(&bin)
            .args(["-strict", "-summary", "-kubernetes-version", "1.31.0"])
            .arg("-schema-location")
            .arg(format!(
                "{}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
                schemas.display()
            ))
            .args(["-ignore-missing-schemas", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), docs.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = check(rendered);
    let summary = ok(&out, &format!("kubeconform {what}"));
    assert!(
        summary.contains("Invalid: 0, Errors: 0"),
        "{what}: {summary}"
    );
    let bad = rendered.replacen("spec:\n", "spec:\n  replicaz: 1\n", 1);
    assert!(
        !check(&bad).status.success(),
        "kubeconform accepted an unknown field: the schemas are not read"
    );
}

#[test]
fn helm_chart_lints_and_renders_every_mode() {
    let Some(helm) = tool("helm") else { return };
    let chart = repo().join("deploy/helm/ario-mlflow-worker");
    for mode in ["poll", "kafka", "kafka.feed=inline"] {
        let set = if mode.contains('=') {
            format!("mode=kafka,{mode}")
        } else {
            format!("mode={mode}")
        };
        let out = run(Command::new(&helm)
            .args(["lint", "--strict", "--set", &set])
            .arg(&chart));
        ok(&out, &format!("helm lint {mode}"));
    }
    let template = |sets: &[&str]| {
        let mut cmd = Command::new(&helm);
        cmd.args(["template", "r"])
            .arg(&chart)
            .args(["--kube-version", "1.31.0"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        run(&mut cmd)
    };
    let poll = ok(
        &template(&["webhookSecret=ario-hook", "config.poll_interval=3"]),
        "helm template poll",
    );
    assert!(
        poll.contains("kind: StatefulSet") && !poll.contains("kind: Deployment"),
        "{poll}"
    );
    assert!(poll.contains("volumeClaimTemplates") && poll.contains("replicas: 1"));
    for needle in [
        "path: /healthz",
        "path: /readyz",
        "name: ario-mlflow-signing-key",
        "secretName: ario-mlflow-wallet",
        "name: ARIO_MLFLOW_WEBHOOK_SECRET",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "poll_interval = 3",
    ] {
        assert!(poll.contains(needle), "poll mode lacks {needle:?}:\n{poll}");
    }
    assert!(!poll.contains("kind: ServiceMonitor"));
    // A ServiceAccount whose token is never mounted, a PodDisruptionBudget by default; a
    // NetworkPolicy and the alerts as a PrometheusRule when asked — the same rules as
    // deploy/prometheus/alerts.yml (the chart's copy must not drift).
    for needle in [
        "kind: ServiceAccount",
        "automountServiceAccountToken: false",
        "kind: PodDisruptionBudget",
    ] {
        assert!(poll.contains(needle), "poll mode lacks {needle:?}");
    }
    assert!(!poll.contains("kind: NetworkPolicy") && !poll.contains("kind: PrometheusRule"));
    let extras = ok(
        &template(&["networkPolicy.enabled=true", "prometheusRule.enabled=true"]),
        "helm template with a NetworkPolicy and a PrometheusRule",
    );
    // The policy admits the listener's pod port by name (a Service port of 80 changes nothing).
    assert!(extras.contains("kind: NetworkPolicy") && extras.contains("        - port: http\n"));
    assert!(extras.contains("kind: PrometheusRule"));
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    assert_eq!(
        std::fs::read_to_string(chart.join("files/alerts.yml")).unwrap(),
        alerts,
        "deploy/helm/ario-mlflow-worker/files/alerts.yml is a copy of deploy/prometheus/alerts.yml"
    );
    let rules = alerts.matches("- alert:").count();
    assert_eq!(
        extras.matches("- alert:").count(),
        rules,
        "every alert in the PrometheusRule"
    );
    assert!(
        extras.contains("{{ $labels.instance }}"),
        "alert templates kept verbatim"
    );
    // Lists and tables reach the config file as TOML (toToml): the guard set from values.
    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        values.path(),
        "config:\n  poll_interval: 3\n  publish_concurrency: 4\n  gateway: [\"g1.example\", \"g2.example:8443\"]\n  guard:\n    tenant_id: acme\n    agent_id: worker-1\n    asset:\n      - id: credit-prod\n        model: \"credit-scorer@champion\"\n        max_age: 900\n",
    )
    .unwrap();
    let guarded = ok(
        &run(Command::new(&helm)
            .args(["template", "r"])
            .arg(&chart)
            .args(["--kube-version", "1.31.0", "-f"])
            .arg(values.path())),
        "helm template with a guard",
    );
    let text = config_check(&guarded, "a guard from values");
    for line in [
        "gateway = [\"g1.example\", \"g2.example:8443\"]  # file",
        "publish_concurrency = \"4\"  # file",
        "# [guard]: tenant \"acme\", agent \"worker-1\", 1 asset(s)",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let kafka = ok(
        &template(&[
            "mode=kafka",
            "replicas=3",
            "serviceMonitor.enabled=true",
            "kafka.saslSecret=kafka-user",
            "kafka.properties[0]=security.protocol=SASL_SSL",
            "managementSecret=ario-mgmt",
        ]),
        "helm template kafka",
    );
    assert!(!kafka.contains("kind: Deployment"), "{kafka}");
    assert_eq!(
        kafka.matches("kind: StatefulSet").count(),
        2,
        "the members and the feed workload: {kafka}"
    );
    for needle in [
        "replicas: 3",
        "podManagementPolicy: Parallel",
        "kind: ServiceMonitor",
        "ARIO_MLFLOW_KAFKA_BROKERS",
        "ARIO_MLFLOW_KAFKA_SASL_PASSWORD",
        "args: [\"run\", \"--source\", \"kafka\"]",
        // Static membership and the transactional id from the (stable) pod name.
        "name: ARIO_MLFLOW_KAFKA_INSTANCE_ID\n              valueFrom:\n                fieldRef:\n                  fieldPath: metadata.name",
        // The feed workload fills the topic.
        "args: [\"feed\", \"--to-kafka\", \"ario.mlflow.events\"]",
        "app.kubernetes.io/component: feed",
        // One management secret for every member, from a Secret.
        "name: ARIO_MLFLOW_MANAGEMENT_SECRET_FILE",
        "secretName: ario-mgmt",
    ] {
        assert!(
            kafka.contains(needle),
            "kafka mode lacks {needle:?}:\n{kafka}"
        );
    }
    // The Service and the PDB select the members only; the feed has a headless Service of its
    // own, and listens (probes, /metrics) like the members — the ServiceMonitor takes both.
    assert!(kafka.matches("app.kubernetes.io/component: worker").count() >= 4);
    assert!(
        kafka.contains("name: r-ario-mlflow-worker-feed\n")
            && kafka.contains("clusterIP: None")
            && kafka.matches("value: \"0.0.0.0:9847\"").count() == 2
            && kafka.matches("path: /healthz").count() == 2,
        "the feed's listener, probes and Service:\n{kafka}"
    );
    let inline = ok(
        &template(&["mode=kafka", "kafka.feed=inline"]),
        "helm template kafka with an inline feed",
    );
    assert!(
        inline.contains("args: [\"run\", \"--source\", \"poll,kafka\"]")
            && inline.contains("volumeClaimTemplates")
            && inline.matches("kind: StatefulSet").count() == 1,
        "{inline}"
    );
    let external = ok(
        &template(&["mode=kafka", "kafka.feed=none"]),
        "helm template kafka fed by something else",
    );
    assert!(
        external.matches("kind: StatefulSet").count() == 1
            && !external.contains("volumeClaimTemplates"),
        "{external}"
    );
    // Guard only: `guard` over the policy in values, its outcomes on a claim.
    let guard_values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        guard_values.path(),
        "mode: guard\nconfig:\n  guard:\n    tenant_id: acme\n    agent_id: gate-1\n    asset:\n      - id: credit-prod\n        model: \"credit-scorer@champion\"\n        max_age: 900\n",
    )
    .unwrap();
    let guard_only = ok(
        &run(Command::new(&helm)
            .args(["template", "r"])
            .arg(&chart)
            .args(["--kube-version", "1.31.0", "-f"])
            .arg(guard_values.path())),
        "helm template guard",
    );
    assert!(
        guard_only.contains("args: [\"guard\"]") && guard_only.contains("volumeClaimTemplates"),
        "{guard_only}"
    );
    assert!(config_check(&guard_only, "guard").contains("agent \"gate-1\", 1 asset(s)"));
    let out = template(&["mode=guard"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("mode guard needs a policy"),
        "guard mode without a policy is refused"
    );
    // Every mode renders objects Kubernetes 1.31 accepts (strict: no unknown field), and a
    // config file the worker accepts.
    for (what, rendered) in [
        ("poll", &poll),
        ("poll with a NetworkPolicy and a PrometheusRule", &extras),
        ("poll with a guard", &guarded),
        ("kafka", &kafka),
        ("kafka inline", &inline),
        ("kafka none", &external),
        ("guard", &guard_only),
    ] {
        kubeconform(rendered, what);
        config_check(rendered, what);
    }
    // The rendered config file is one the worker accepts.
    let text = config_check(&kafka, "kafka");
    assert!(
        text.contains("kafka_property = [\"security.protocol=SASL_SSL\"]  # file"),
        "{text}"
    );
    // Change data capture: each member re-keys Debezium's topics onto the event topic.
    let cdc = ok(
        &template(&[
            "mode=kafka",
            "kafka.format=debezium",
            "kafka.topic=mlflow.public.runs\\,mlflow.public.model_versions",
            "kafka.eventsTopic=ario.mlflow.events",
        ]),
        "helm template kafka debezium",
    );
    for needle in [
        "name: ARIO_MLFLOW_KAFKA_FORMAT",
        "value: debezium",
        "value: \"mlflow.public.runs,mlflow.public.model_versions\"",
        "name: ARIO_MLFLOW_KAFKA_EVENTS_TOPIC",
    ] {
        assert!(cdc.contains(needle), "debezium lacks {needle:?}:\n{cdc}");
    }
    assert!(
        !kafka.contains("ARIO_MLFLOW_KAFKA_FORMAT"),
        "cloudevents is the default"
    );
    assert_eq!(
        cdc.matches("kind: StatefulSet").count(),
        1,
        "Debezium fills the topic: no feed workload"
    );
    kubeconform(&cdc, "kafka debezium");
    config_check(&cdc, "kafka debezium");
    let out = template(&["mode=kafka", "kafka.format=debezium"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr)
                .contains("set kafka.topic to the Debezium topics"),
        "debezium without its topics is refused"
    );
    // Bad values are refused at render time.
    let out = template(&["mode=both"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr)
                .contains("mode must be one of the following: \"poll\", \"kafka\", \"guard\"")
    );
    // values.schema.json: wrong types and unknown keys are refused before rendering.
    for (set, says) in [
        ("replicas=0", "replicas: Must be greater than or equal to 1"),
        (
            "kafka.format=avro",
            "kafka.format: kafka.format must be one of the following",
        ),
        (
            "servicemonitor.enabled=true",
            "Additional property servicemonitor is not allowed",
        ),
    ] {
        let out = template(&[set]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && err.contains(says), "{set}: {err}");
    }
    let out = template(&["signingKeySecret="]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("signingKeySecret is required")
    );
    println!("helm: lint --strict, template, kubeconform -strict (Kubernetes 1.31) and config check pass for poll, kafka (feed workload, inline, none), kafka with Debezium and guard");
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The unit as shipped, pointed at the binary built here (verify needs ExecStart to exist)
    // and with the env file optional (it is the operator's).
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/ario-mlflow-worker.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/ario-mlflow-worker",
            env!("CARGO_BIN_EXE_ario-mlflow-worker"),
        )
        .replace("EnvironmentFile=/", "EnvironmentFile=-/");
    let path = dir.path().join("ario-mlflow-worker.service");
    std::fs::write(&path, unit).unwrap();
    let out = run(Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&path));
    // Warnings (an unknown key, a bad value) exit 0: any output is a failure.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path));
    let text = ok(&out, "systemd-analyze security");
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("")
        .to_string();
    println!("systemd-analyze: verify clean; {overall}");
    assert!(overall.contains("OK"), "{text}");
}

#[test]
fn compose_file_validates() {
    let Some(compose) = tool("docker-compose") else {
        return;
    };
    // Without a signing key it refuses to start, saying what to set (a key generated silently
    // would differ per container).
    let out = run(Command::new(&compose)
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .env_remove("ARIO_MLFLOW_SIGNING_KEY")
        .current_dir(repo()));
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("set ARIO_MLFLOW_SIGNING_KEY in .env"),
        "{}",
        show(&out)
    );
    let out = run(Command::new(&compose)
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .env("ARIO_MLFLOW_SIGNING_KEY", SEED_B64)
        .current_dir(repo()));
    ok(&out, "docker-compose config -q");
    let out = run(Command::new(&compose)
        .args([
            "-f",
            "docker-compose.yml",
            "--profile",
            "kafka",
            "config",
            "--services",
        ])
        .env("ARIO_MLFLOW_SIGNING_KEY", SEED_B64)
        .current_dir(repo()));
    let services = ok(&out, "docker-compose config --services");
    for s in [
        "postgres",
        "mlflow",
        "devnet",
        "worker",
        "prometheus",
        "kafka",
        "feed",
        "kafka-worker",
        "wallet-init",
    ] {
        assert!(services.lines().any(|l| l == s), "{s} missing: {services}");
    }
    // Read as an operator would: the poller and the consumer group never run together, every
    // long-running service restarts, `feed` keeps the image's healthcheck (its listener),
    // devnet is read over http, one wallet is shared.
    let out = run(Command::new(&compose)
        .args(["-f", "docker-compose.yml", "config"])
        .env("ARIO_MLFLOW_SIGNING_KEY", SEED_B64)
        .current_dir(repo()));
    let resolved = ok(&out, "docker-compose config");
    let service = |name: &str| -> String {
        let mut lines = resolved.lines().skip_while(|l| *l != format!("  {name}:"));
        assert!(lines.next().is_some(), "{name} in:\n{resolved}");
        lines
            .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let worker = service("worker");
    assert!(
        worker.contains("- poll") && !worker.contains("- kafka"),
        "{worker}"
    );
    let consumers = service("kafka-worker");
    assert!(
        consumers.contains("- kafka") && !consumers.contains("- poll"),
        "{consumers}"
    );
    // The cdc profile: Debezium and its worker only there, set up with deploy/debezium's files.
    for name in ["cdc-setup", "connect", "cdc-register", "cdc-worker"] {
        let text = service(name);
        assert!(
            text.contains("- cdc") && !text.contains("- poll") && !text.contains("- kafka\n"),
            "{name}: {text}"
        );
    }
    assert!(service("cdc-setup").contains("deploy/debezium/postgres-setup.sql"));
    assert!(service("cdc-register").contains("deploy/debezium/postgres-connector.json"));
    for (name, needle) in [
        ("worker", "restart: unless-stopped"),
        ("kafka-worker", "restart: unless-stopped"),
        ("feed", "restart: unless-stopped"),
        ("kafka-worker", "feed:"),
        ("kafka-worker", "wallet-init:"),
        (
            "kafka-worker",
            "ARIO_MLFLOW_ARWEAVE_WALLET: /var/lib/ario-mlflow-wallet/.ario-mlflow/wallet.json",
        ),
        ("worker", "ARIO_MLFLOW_GATEWAYS: http://devnet:8080"),
    ] {
        assert!(
            service(name).contains(needle),
            "{name} lacks {needle:?}:\n{}",
            service(name)
        );
    }
    assert!(
        !service("feed").contains("- NONE"),
        "the feed's healthcheck is not disabled"
    );
    assert!(!resolved.contains("change-me"), "no default webhook secret");
    println!(
        "docker-compose: config valid, {} services",
        services.lines().count()
    );
}

#[test]
fn dashboard_and_alerts_use_only_documented_metrics() {
    let docs = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect();
    exprs.push(std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap());
    let mut names = std::collections::BTreeSet::new();
    for e in &exprs {
        for (i, _) in e.match_indices("ario_mlflow_worker_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .fold(name.clone(), |n, s| {
                    n.strip_suffix(s).map(str::to_string).unwrap_or(n)
                });
            names.insert(base);
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for n in &names {
        assert!(
            docs.contains(&format!("`{n}`")),
            "{n} is used by the dashboard or alerts but not documented in docs/metrics.md"
        );
    }
    println!(
        "dashboard + alerts: {} metric names, all documented",
        names.len()
    );
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "2", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn image_builds_runs_as_non_root_and_passes_its_healthcheck() {
    let Some(podman) = tool("podman") else { return };
    let Some(venv) = venv() else { return };
    let tag = format!("localhost/ario-mlflow-worker:test-{}", std::process::id());
    let started = Instant::now();
    let out = common::tools::build_worker_image(&podman, &tag);
    ok(&out, "podman build");
    println!("image built in {:.1} s", started.elapsed().as_secs_f64());
    let inspect = |format: &str| {
        ok(
            &run(Command::new(&podman).args(["image", "inspect", &tag, "--format", format])),
            "inspect",
        )
        .trim()
        .to_string()
    };
    assert_eq!(inspect("{{.Config.User}}"), "10001:10001");
    assert!(inspect("{{.Config.Healthcheck}}").contains("/healthz"));
    assert!(inspect("{{json .Config.Volumes}}").contains("/var/lib/ario-mlflow-worker"));
    let env_in_image = inspect("{{json .Config.Env}}");
    assert!(
        !env_in_image.contains("SIGNING_KEY") && !env_in_image.contains("SECRET"),
        "no secret baked in: {env_in_image}"
    );
    println!(
        "image size {} MB",
        inspect("{{.Size}}").parse::<u64>().unwrap_or(0) / 1_000_000
    );

    let mlflow = MlflowServer::start(&venv);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dn = rt.block_on(common::devnet::start_devnet(false, &[]));
    let name = format!("ario-test-{}", std::process::id());
    let container = Container(name.clone());
    let out = run(Command::new(&podman).args([
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--init",
        "-e",
        &format!("MLFLOW_TRACKING_URI={}", mlflow.uri),
        "-e",
        &format!("ARIO_MLFLOW_UPLOAD_URL={}", dn.handle.url()),
        "-e",
        &format!("ARIO_MLFLOW_SIGNING_KEY={SEED_B64}"),
        "-e",
        "ARIO_MLFLOW_LISTEN=127.0.0.1:9847",
        "-e",
        "ARIO_MLFLOW_HEALTH_INTERVAL=1",
        &tag,
        "run",
        "--poll-interval",
        "1",
    ]));
    ok(&out, "podman run");
    let logs = || {
        String::from_utf8_lossy(&run(Command::new("podman").args(["logs", &container.0])).stderr)
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = run(Command::new(&podman).args(["healthcheck", "run", &name]));
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the HEALTHCHECK never passed: {}\nlogs: {}",
            show(&out),
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = run(Command::new(&podman).args([
        "exec",
        &name,
        "curl",
        "-fsS",
        "http://127.0.0.1:9847/readyz",
    ]));
    let ready = ok(&out, "readyz from inside the container");
    assert!(
        ready.contains("\"ready\":true"),
        "{ready}\nlogs: {}",
        logs()
    );
    let out = run(Command::new(&podman).args(["exec", &name, "id", "-u"]));
    assert_eq!(ok(&out, "id -u").trim(), "10001");
    let metrics = ok(
        &run(Command::new("curl").args(["-fsS", "http://127.0.0.1:9847/metrics"])),
        "metrics from the host",
    );
    assert!(metrics.contains("ario_mlflow_worker_build_info"));
    if let Some(promtool) = tool("promtool") {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
        ok(
            &child.wait_with_output().unwrap(),
            "promtool check metrics (container)",
        );
    }
    // SIGTERM through the init: a clean exit 0 well before podman's kill timeout.
    let stopping = Instant::now();
    ok(
        &run(Command::new(&podman).args(["stop", "-t", "20", &name])),
        "podman stop",
    );
    let code = ok(
        &run(Command::new(&podman).args(["inspect", &name, "--format", "{{.State.ExitCode}}"])),
        "exit code",
    );
    println!(
        "container stopped in {:.1} s with exit {}",
        stopping.elapsed().as_secs_f64(),
        code.trim()
    );
    assert_eq!(code.trim(), "0", "logs: {}", logs());
    assert!(stopping.elapsed() < Duration::from_secs(15));
    drop(container);
    let _ = Command::new(&podman)
        .args(["rmi", "-f", &tag])
        .stdout(Stdio::null())
        .status();
}
