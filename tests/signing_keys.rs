//! Signing keys an organisation can govern (issue 28): the envelope key in a real PKCS#11 token
//! — Debian's SoftHSM2, a token per test in a directory of its own, keys generated in it with
//! OpenSC's `pkcs11-tool` or imported with `keys import` — and rotation with a signed hand-over.
//!
//! 1. Ed25519 is deterministic: the corpus seed imported into the token signs the family's
//!    vectors (the `key_retired` hand-over among them) to the same bytes as the file key —
//!    and the signatures per second of each are printed.
//! 2. The service signs through the token: a lifecycle anchored with a key generated inside
//!    the token; our `verify` and the plugin's `ar-io-mlflow verify` pass; the PIN appears in
//!    no log and no `config check`.
//! 3. The token taken away mid-run: the job waits (a transient failure, nothing signed with
//!    another key) and is anchored once the token is back; a different key put under the same
//!    label parks the job naming it.
//! 4. Rotation in the token: the hand-over anchored, proofs before and after verify against the
//!    key history, a proof by the retired key after its retirement fails; a history naming a
//!    hand-over the gateways do not serve is refused.
//! 5. File keys: a revocation backdated to a suspected compromise moves the key files aside and
//!    fails the proofs the key made after that time.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ario_mlflow_worker::keys::{EnvelopeKey, KeySource, Pkcs11Config};
use ario_mlflow_worker::proof::{jcs, sign_envelope};
use common::hsm::{Hsm, MODULE, PIN};
use common::lab::{last_json_line, Lab, SEED_B64};
use common::mlflow::venv;
use common::process::Proc;
use common::run::{mlflow_data, show, wait_for, worker};
use serde_json::Value;

/// A worker's environment for `lab` with the token's key instead of the file key.
fn token_env(
    lab: &Lab,
    hsm: &Hsm,
    state: &Path,
    token: &str,
    key: &str,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = lab
        .worker_env(state)
        .into_iter()
        .filter(|(k, _)| *k != "ARIO_MLFLOW_SIGNING_KEY")
        .collect();
    env.extend(hsm.env(token, key));
    env
}

/// The public key `keys show` reads from the token.
fn token_public_key(env: &[(&str, String)]) -> String {
    let out = worker(env, &["keys", "show", "--json"]);
    assert!(out.status.success(), "keys show: {}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("PKCS#11 token"),
        "{doc}"
    );
    doc["public_key"].as_str().unwrap().to_string()
}

#[test]
fn the_same_seed_in_the_token_signs_the_family_vectors_to_the_same_bytes() {
    let Some(hsm) = Hsm::start() else { return };
    hsm.init_token("same-seed");
    let mut env = hsm.env("same-seed", "imported");
    env.retain(|(k, _)| *k != "ARIO_MLFLOW_SIGNER");
    env.push(("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()));
    let out = worker(&env, &["keys", "import", "--json"]);
    assert!(out.status.success(), "keys import: {}", show(&out));
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["public_key"], common::CORPUS_PUBLIC_HEX);
    // The label is taken now: a second import writes nothing.
    let again = worker(&env, &["keys", "import"]);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));

    // This test alone loads the module in-process (the others run the worker binary).
    std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
    let token = EnvelopeKey::from_pkcs11(Pkcs11Config {
        module: MODULE.into(),
        token: "same-seed".into(),
        key: "imported".into(),
        pin: cryptoki::types::AuthPin::new(PIN.into()),
    })
    .expect("the imported key");
    assert!(matches!(token.source(), KeySource::Pkcs11 { .. }));
    let file = EnvelopeKey::load_or_create(Some(SEED_B64), None).unwrap();
    assert_eq!(token.public_key_hex(), file.public_key_hex());
    let mut vectors = 0;
    for path in common::vector_files("vectors/ario-proof", "envelope-") {
        let vector: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let Some(unsigned) = vector["inputs"]["envelope_pre_signature"].as_object() else {
            continue;
        };
        let unsigned = Value::Object(unsigned.clone());
        let by_token = sign_envelope(&unsigned, &token).unwrap();
        let by_file = sign_envelope(&unsigned, &file).unwrap();
        assert_eq!(
            jcs::canonicalize(&by_token).unwrap(),
            jcs::canonicalize(&by_file).unwrap(),
            "{}",
            path.display()
        );
        assert_eq!(
            by_token["signature"],
            vector["expected_outputs"]["signature_hex"],
            "{}: the family's signature",
            path.display()
        );
        vectors += 1;
    }
    assert!(
        vectors >= 5,
        "the family's envelope vectors, key_retired among them"
    );

    // Signatures per second, each signer over the same envelope (for the note).
    let unsigned = serde_json::json!({
        "spec_version": "ario.mlflow/v1", "event_id": "e", "event_type": "prediction",
        "subject": {"type": "x"}, "payload_hash": "00".repeat(32), "previous_hash": "GENESIS",
        "signed_at": "2026-12-05T00:00:00.000000+00:00",
    });
    let rate = |key: &EnvelopeKey| {
        let n = 2000;
        let started = Instant::now();
        for _ in 0..n {
            sign_envelope(&unsigned, key).unwrap();
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    let (through_token, through_file) = (rate(&token), rate(&file));
    println!(
        "signatures per second over one envelope (JCS + Ed25519): SoftHSM2 {through_token:.0}, file key {through_file:.0} ({:.1}x)",
        through_file / through_token
    );
}

#[test]
fn the_service_signs_through_the_token_and_both_verifiers_pass() {
    let Some(hsm) = Hsm::start() else { return };
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    hsm.init_token("prod");
    hsm.generate("prod", "envelope-2026");
    let ids = common::lab::scenario(&lab.server, &venv, "hsm");
    let model = ids["model_name"].as_str().unwrap().to_string();
    let state = lab.home.path().join("state");
    let env = token_env(&lab, &hsm, &state, "prod", "envelope-2026");
    let public = token_public_key(&env);
    assert_ne!(public, common::CORPUS_PUBLIC_HEX, "a key made in the token");

    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    let items = lab.dn.handle.items();
    assert!(items.len() >= 10, "the lifecycle anchored: {}", items.len());
    for item in &items {
        let bytes =
            std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
        let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
        let envelope: Value = serde_json::from_slice(&parsed.data).unwrap();
        assert_eq!(
            envelope["public_key"],
            public.as_str(),
            "signed by the token's key"
        );
    }
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains(PIN), "the PIN in the log");

    // Both verifiers, pinned to the token's key for ours.
    let version = format!("{model}/1");
    let run = ids["run"].as_str().unwrap();
    for args in [
        vec![
            "verify",
            "model",
            version.as_str(),
            "--trusted-key",
            &public,
        ],
        vec!["verify", "run", run, "--trusted-key", &public],
        vec!["audit", version.as_str()],
    ] {
        let out = worker(&env, &args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
    }
    let mut plugin_env = common::plugin::lab_env(&lab);
    plugin_env.retain(|(k, _)| *k != "ARIO_MLFLOW_SIGNING_KEY");
    for (kind, target) in [("model", version.as_str()), ("run", run)] {
        let out = common::plugin::run(&venv, &plugin_env, &["verify", kind, target]);
        assert!(out.status.success(), "plugin verify {kind}: {}", show(&out));
    }

    // The PIN is never shown: not by `config check`, not by a PIN given inline.
    let mut inline = env.clone();
    inline.retain(|(k, _)| *k != "ARIO_MLFLOW_PKCS11_PIN_FILE");
    inline.push(("ARIO_MLFLOW_PKCS11_PIN", PIN.to_string()));
    let out = worker(&inline, &["config", "check", "--command", "run"]);
    assert!(out.status.success(), "config check: {}", show(&out));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(PIN), "{printed}");
    assert!(
        printed.contains("pkcs11_pin") && printed.contains("<redacted>"),
        "{printed}"
    );
    // A wrong PIN: exit 2 naming the login, not the PIN.
    let mut wrong = inline.clone();
    wrong.retain(|(k, _)| *k != "ARIO_MLFLOW_PKCS11_PIN");
    wrong.push(("ARIO_MLFLOW_PKCS11_PIN", "0000-wrong".to_string()));
    let out = worker(&wrong, &["keys", "show"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refused the login") && !said.contains("0000-wrong"),
        "{said}"
    );
}

#[test]
fn a_token_taken_away_makes_jobs_wait_and_another_key_under_its_label_parks_them() {
    let Some(hsm) = Hsm::start() else { return };
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let token_dir = hsm.init_token("away");
    hsm.generate("away", "k");
    let ids = common::lab::scenario(&lab.server, &venv, "away");
    let model = ids["model_name"].as_str().unwrap().to_string();
    let state = lab.home.path().join("state");
    let port = common::process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut env = token_env(&lab, &hsm, &state, "away", "k");
    env.push(("ARIO_MLFLOW_LISTEN", listen.clone()));
    let public = token_public_key(&env);
    let log = lab.home.path().join("run.log");
    let mut run = Proc::worker(
        &env,
        &["run", "--poll-interval", "1", "--health-interval", "0.5"],
        &log,
    );
    common::metrics::settle(&listen, Duration::from_secs(180));
    let before = lab.dn.handle.items().len();

    // The token goes away (its directory moved out of SoftHSM's token directory).
    let away = hsm.dir.path().join("away-token");
    std::fs::rename(&token_dir, &away).unwrap();
    let register = |run_id: &str| {
        let out = lab.server.python(
            &venv,
            &mlflow_data("registry_actions.py"),
            &[&lab.server.uri, "register", &model, run_id],
            &[],
        );
        assert!(out.status.success(), "{}", show(&out));
        last_json_line(&out.stdout)["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let version = register(ids["parity_run"].as_str().unwrap());
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(
        "the job waiting on the token",
        Duration::from_secs(60),
        Duration::from_millis(200),
        &[&log],
        || logged().contains("transient failure") && logged().contains("PKCS#11 token \"away\""),
    );
    assert_eq!(
        lab.dn.handle.items().len(),
        before,
        "nothing signed while the token is away"
    );
    assert!(run.alive(), "the service keeps running: {}", run.log());

    // Back: the waiting job is anchored, by the token's key.
    std::fs::rename(&away, &token_dir).unwrap();
    let started = Instant::now();
    wait_for(
        "the version anchored once the token is back",
        Duration::from_secs(120),
        Duration::from_millis(200),
        &[&log],
        || lab.dn.handle.items().len() > before,
    );
    println!(
        "token back → anchored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    common::metrics::settle(&listen, Duration::from_secs(120));
    let newest = newest_envelope(&lab);
    assert_eq!(newest["public_key"], public.as_str());
    assert_eq!(newest["subject"]["version"], version.as_str());

    // Another key under the same label: every signature is checked against the key read at
    // start, so the job parks naming it, and nothing signed by the other key leaves.
    hsm.delete("away", "k");
    hsm.generate("away", "k");
    let anchored = lab.dn.handle.items().len();
    let other = register(ids["run"].as_str().unwrap());
    wait_for(
        "the job parked on the other key",
        Duration::from_secs(60),
        Duration::from_millis(200),
        &[&log],
        || logged().contains("does not verify under the public key") && logged().contains("parked"),
    );
    assert_eq!(
        lab.dn.handle.items().len(),
        anchored,
        "nothing signed by another key left"
    );
    assert!(
        logged().contains(&format!("mv/{model}/{other}")),
        "the parked job named"
    );
    let parked = || {
        common::metrics::scrape(&listen)
            .map(|t| common::metrics::sum(&t, "ario_mlflow_worker_jobs", &[("state", "parked")]))
            .unwrap_or(0.0)
    };
    wait_for(
        "the parked gauge",
        Duration::from_secs(30),
        Duration::from_millis(300),
        &[&log],
        || parked() >= 1.0,
    );
    assert!(
        run.sigterm(Duration::from_secs(40)).success(),
        "{}",
        run.log()
    );
    assert!(!logged().contains(PIN), "the PIN in the log");
}

/// The envelope devnet accepted last.
fn newest_envelope(lab: &Lab) -> Value {
    let newest = lab
        .dn
        .handle
        .items()
        .into_iter()
        .max_by_key(|i| i.first_seen_ms)
        .unwrap();
    let bytes =
        std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", newest.id))).unwrap();
    let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
    serde_json::from_slice(&parsed.data).unwrap()
}

/// Rotation end to end (issue 28): the old key signs the `key_retired` hand-over, anchored
/// through Turbo; proofs made before and after verify against the key history; a proof made
/// with the retired key after its retirement fails with that reason.
#[test]
fn a_rotation_hands_over_and_the_key_history_judges_proofs_by_when_they_were_signed() {
    let Some(hsm) = Hsm::start() else { return };
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    hsm.init_token("rot");
    hsm.generate("rot", "k2026");
    hsm.generate("rot", "k2027");
    let ids = common::lab::scenario(&lab.server, &venv, "rot");
    let model = ids["model_name"].as_str().unwrap().to_string();
    let state = lab.home.path().join("state");
    let history = lab.home.path().join("key-history.json");
    let with_key = |key: &str| {
        let mut env = token_env(&lab, &hsm, &state, "rot", key);
        env.push(("ARIO_MLFLOW_KEY_HISTORY", history.display().to_string()));
        env
    };
    let (old_env, new_env) = (with_key("k2026"), with_key("k2027"));
    let (old_key, new_key) = (token_public_key(&old_env), token_public_key(&new_env));
    let out = worker(&old_env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    let before = lab.dn.handle.items().len();

    // The hand-over, signed by the old key.
    let out = worker(
        &old_env,
        &[
            "keys",
            "rotate",
            "--to-pkcs11-key",
            "k2027",
            "--tenant-id",
            "acme",
            "--json",
        ],
    );
    assert!(out.status.success(), "keys rotate: {}", show(&out));
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["retired_public_key"], old_key.as_str());
    assert_eq!(rotated["new_public_key"], new_key.as_str());
    assert_eq!(
        lab.dn.handle.items().len(),
        before + 1,
        "the hand-over anchored"
    );
    let handover = newest_envelope(&lab);
    assert_eq!(handover["event_type"], "key_retired");
    assert_eq!(handover["spec_version"], "ario.agent/v1");
    assert_eq!(
        handover["public_key"],
        old_key.as_str(),
        "signed by the old key"
    );
    assert_eq!(handover["payload"]["new_public_key"], new_key.as_str());
    assert_eq!(handover["subject"]["tenant_id"], "acme");
    // Rotating again with the old key is refused: the history's current key is the new one.
    let again = worker(&old_env, &["keys", "rotate", "--to-pkcs11-key", "k2027"]);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
    let out = worker(&new_env, &["keys", "history"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && listed.contains(&old_key) && listed.contains(&new_key),
        "{}",
        show(&out)
    );
    assert!(listed.contains(rotated["tx"].as_str().unwrap()), "{listed}");

    // After: a version anchored by the new key.
    let register = |run_id: &str| {
        let out = lab.server.python(
            &venv,
            &mlflow_data("registry_actions.py"),
            &[&lab.server.uri, "register", &model, run_id],
            &[],
        );
        assert!(out.status.success(), "{}", show(&out));
        last_json_line(&out.stdout)["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let v2 = register(ids["parity_run"].as_str().unwrap());
    let out = worker(&new_env, &["backfill"]);
    assert!(out.status.success(), "backfill after: {}", show(&out));
    assert_eq!(newest_envelope(&lab)["public_key"], new_key.as_str());

    // A "proof" made with the retired key after its retirement.
    let v3 = register(ids["run"].as_str().unwrap());
    let out = worker(&old_env, &["anchor", "model", &format!("{model}/{v3}")]);
    assert!(
        out.status.success(),
        "anchor with the retired key: {}",
        show(&out)
    );
    assert_eq!(newest_envelope(&lab)["public_key"], old_key.as_str());

    let file = history.display().to_string();
    let verify = |version: &str| {
        worker(
            &new_env,
            &[
                "verify",
                "model",
                &format!("{model}/{version}"),
                "--trusted-keys-file",
                &file,
            ],
        )
    };
    for version in ["1", v2.as_str()] {
        let out = verify(version);
        assert!(out.status.success(), "verify {version}: {}", show(&out));
    }
    let forged = verify(&v3);
    assert_eq!(forged.status.code(), Some(1), "{}", show(&forged));
    assert!(
        String::from_utf8_lossy(&forged.stdout).contains("after its retirement"),
        "{}",
        show(&forged)
    );
    // A history naming a hand-over the gateways do not hold: refused before any verdict.
    let mut doctored: Value = serde_json::from_slice(&std::fs::read(&history).unwrap()).unwrap();
    let some_proof = lab
        .dn
        .handle
        .items()
        .into_iter()
        .map(|i| i.id)
        .find(|id| rotated["tx"] != id.as_str())
        .unwrap();
    doctored["handovers"][0]["tx"] = some_proof.as_str().into();
    let doctored_file = lab.home.path().join("doctored-history.json");
    std::fs::write(&doctored_file, doctored.to_string()).unwrap();
    let out = worker(
        &new_env,
        &[
            "verify",
            "model",
            &format!("{model}/1"),
            "--trusted-keys-file",
            &doctored_file.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another envelope"),
        "{}",
        show(&out)
    );
    // The same proof passes when only the signature counts: the history is what catches it.
    let out = worker(&new_env, &["verify", "model", &format!("{model}/{v3}")]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn a_file_key_revoked_from_a_past_time_fails_what_it_signed_after_and_moves_aside() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let ids = common::lab::scenario(&lab.server, &venv, "revoke");
    let model = ids["model_name"].as_str().unwrap().to_string();
    let state = lab.home.path().join("state");
    let key_dir = lab.home.path().join("keys");
    let mut env: Vec<(&'static str, String)> = lab
        .worker_env(&state)
        .into_iter()
        .filter(|(k, _)| *k != "ARIO_MLFLOW_SIGNING_KEY")
        .collect();
    env.push(("ARIO_MLFLOW_KEY_DIR", key_dir.display().to_string()));
    let show_key = |env: &[(&str, String)]| {
        let out = worker(env, &["keys", "show", "--json"]);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["public_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let old_key = show_key(&env);
    let before_anchoring = ario_mlflow_worker::anchor::sign::rfc3339_ms(
        time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
    );
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));

    // Revoked as of a moment before it anchored anything (the suspected compromise).
    let out = worker(
        &env,
        &[
            "keys",
            "rotate",
            "--reason",
            "compromised",
            "--retired-at",
            &before_anchoring,
        ],
    );
    assert!(out.status.success(), "keys rotate: {}", show(&out));
    let new_key = show_key(&env);
    assert_ne!(new_key, old_key, "the new key files are in place");
    let retired_dir = key_dir.join("retired");
    let kept: Vec<_> = std::fs::read_dir(&retired_dir).unwrap().collect();
    assert_eq!(kept.len(), 1, "the old pair kept aside");
    assert!(!key_dir.join("next").exists());
    let handover = newest_envelope(&lab);
    assert_eq!(handover["payload"]["reason"], "compromised");
    assert_eq!(handover["payload"]["retired_at"], before_anchoring.as_str());
    assert_eq!(handover["public_key"], old_key.as_str());

    let history = key_dir.join("history.json").display().to_string();
    let out = worker(
        &env,
        &[
            "verify",
            "model",
            &format!("{model}/1"),
            "--trusted-keys-file",
            &history,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("after its retirement"),
        "{}",
        show(&out)
    );
    // A retirement in the future is refused.
    let out = worker(
        &env,
        &["keys", "rotate", "--retired-at", "2999-01-01T00:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
