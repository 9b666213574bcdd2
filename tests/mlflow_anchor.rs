//! Anchoring the MLflow lifecycle against a real MLflow server (from PyPI) and devnet over TLS,
//! judged by the `ar-io-mlflow` plugin itself:
//! * payload parity — our training payload bytes equal the bytes the plugin's `anchor()` writes
//!   to `ario/payload.json` for the same run (ours computed first, before either writes);
//! * runs the plugin anchored are detected and left alone;
//! * cross-verification — runs, versions and traces anchored by our `anchor …` commands pass the
//!   plugin's `verify run|model|trace` and `audit`; tampering afterwards makes them fail;
//! * a NaN metric is a clear error and nothing is anchored.

mod common;

use std::process::Command;
use std::time::Duration;

use ario_mlflow_worker::anchor::{AnchorStatus, Anchorer};
use ario_mlflow_worker::arweave::turbo::TurboConfig;
use ario_mlflow_worker::arweave::{TurboClient, Wallet};
use ario_mlflow_worker::keys::{EnvelopeKey, KeySource};
use ario_mlflow_worker::mlflow::{MlflowClient, MlflowConfig};
use ario_mlflow_worker::proof::jcs;
use common::devnet::*;
use common::lab::{scenario, Lab, SEED_B64};
use common::mlflow::venv;
use common::run::{mlflow_data as data, show, worker};

use common::plugin::run as plugin;

#[test]
fn the_lifecycle_anchored_here_verifies_with_the_plugin() {
    let Some(venv) = venv() else { return };
    let Lab {
        server,
        rt,
        dn,
        home,
        ca,
        gateway,
    } = Lab::start(&venv);

    let ids = scenario(&server, &venv, "t");
    let s = |k: &str| ids[k].as_str().unwrap().to_string();
    let (parity_run, run, model, trace, nan_run) = (
        s("parity_run"),
        s("run"),
        s("model_name"),
        s("trace"),
        s("nan_run"),
    );

    // The in-process anchorer: same key and devnet as the CLI below.
    let mlflow = MlflowClient::new(MlflowConfig::new(server.uri.parse().unwrap())).unwrap();
    let wallet = Wallet::load_or_create(None, Some(&home.path().join("wallet.json"))).unwrap();
    let turbo = TurboClient::new(TurboConfig {
        upload_url: dn.handle.url().parse().unwrap(),
        http: http_for(&dn.handle, Duration::from_secs(10)),
        retry: fast_retry(4),
    })
    .unwrap();
    let seed: [u8; 32] = hex::decode(common::CORPUS_SEED_HEX)
        .unwrap()
        .try_into()
        .unwrap();
    let anchorer = Anchorer {
        mlflow: mlflow.clone(),
        turbo,
        key: EnvelopeKey::from_seed(&seed, KeySource::Env),
        wallet,
        gateway_host: gateway.clone(),
        prediction_tags: Default::default(),
        traces: Default::default(),
        served_models: Default::default(),
    };

    // 1. Payload parity with the plugin, ours computed before either writes.
    let parity = rt.block_on(mlflow.get_run(&parity_run)).unwrap();
    let (ours, checksums) = rt
        .block_on(anchorer.training_payload(&parity, None))
        .unwrap();
    let ours = jcs::canonicalize(&ours).unwrap();
    assert!(
        checksums.contains_key("MLmodel") && checksums.len() >= 3,
        "MLflow 3 LoggedModel files were hashed: {checksums:?}"
    );
    let plugin_env = [
        ("REQUESTS_CA_BUNDLE", ca.display().to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("HOME", home.path().display().to_string()),
        ("ARIO_MLFLOW_GATEWAYS", gateway.clone()),
        ("ARIO_MLFLOW_GATEWAY_HOST", gateway.clone()),
        ("MLFLOW_TRACKING_URI", server.uri.clone()),
    ];
    let plugin_env_ref: Vec<(&str, &str)> =
        plugin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = server.python(
        &venv,
        &data("plugin_anchor.py"),
        &[&server.uri, &parity_run, dn.handle.url()],
        &plugin_env_ref,
    );
    assert!(out.status.success(), "plugin anchor(): {}", show(&out));
    let theirs = rt
        .block_on(mlflow.download_run_artifact(&parity, "ario/payload.json"))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs),
        "training payload bytes differ from the plugin's"
    );
    println!(
        "payload parity: {} bytes identical to the plugin's ario/payload.json",
        ours.len()
    );

    // 2. A run the plugin anchored is left alone.
    let again = rt.block_on(anchorer.anchor_run(&parity_run, None)).unwrap();
    assert_eq!(again.status, AnchorStatus::AlreadyAnchored);
    let plugin_tx = rt
        .block_on(mlflow.get_run(&parity_run))
        .unwrap()
        .tag("ario.training_tx")
        .unwrap()
        .to_string();
    assert_eq!(again.tx_id, plugin_tx);

    // 3. Our CLI anchors the registered run, its version, promotion, datasets and the trace.
    let env = common::lab::anchoring_env(
        &server.uri,
        &dn,
        &ca,
        &gateway,
        home.path(),
        &home.path().join("state"),
    );
    let mv = format!("{model}/1");
    for args in [
        vec!["anchor", "model", mv.as_str(), "--json"],
        vec![
            "anchor",
            "promotion",
            mv.as_str(),
            "--from",
            "None",
            "--to",
            "Staging",
            "--json",
        ],
        vec!["anchor", "dataset", run.as_str(), "--json"],
        vec!["anchor", "trace", trace.as_str(), "--json"],
    ] {
        let out = worker(&env, &args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        println!("{args:?} →\n{}", text.trim());
        assert!(text.contains("\"status\":\"anchored\""), "{args:?}: {text}");
    }
    // Re-running is a no-op.
    let out = worker(&env, &["anchor", "model", &mv]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already-anchored"),
        "{}",
        show(&out)
    );

    // 4. The plugin's verifier accepts what we made.
    for args in [
        vec!["verify", "run", run.as_str()],
        vec!["verify", "model", mv.as_str()],
        vec!["verify", "trace", trace.as_str()],
        vec!["audit", mv.as_str()],
    ] {
        let out = plugin(&venv, &plugin_env, &args);
        assert!(
            out.status.success(),
            "plugin {args:?} must pass: {}",
            show(&out)
        );
    }
    println!("plugin verify run/model/trace and audit: all exit 0");

    // 5. Tampering after anchoring makes the plugin's verify fail.
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update params set value='9.9' where run_uuid=? and key='C'\", (sys.argv[2],)); c.commit()"])
        .arg(server.db_path())
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = plugin(&venv, &plugin_env, &["verify", "run", &run]);
    assert!(
        !out.status.success(),
        "a changed param must fail verify run: {}",
        show(&out)
    );

    let run_info = rt.block_on(mlflow.get_run(&run)).unwrap();
    let model_dir = format!(
        "mlflow-artifacts:/{}/models/{}/artifacts/MLmodel",
        run_info.info.experiment_id,
        s("model_id")
    );
    rt.block_on(mlflow.upload_artifact(&model_dir, b"tampered".to_vec()))
        .unwrap();
    let out = plugin(&venv, &plugin_env, &["verify", "model", &mv]);
    assert!(
        !out.status.success(),
        "a replaced artifact must fail verify model: {}",
        show(&out)
    );
    println!("tampering: changed param → verify run fails; replaced MLmodel → verify model fails");

    // 6. A NaN metric is a clear error; nothing is anchored.
    let out = worker(&env, &["anchor", "run", &nan_run]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"broken\""),
        "{}",
        show(&out)
    );
    let nan = rt.block_on(mlflow.get_run(&nan_run)).unwrap();
    assert!(nan.tag("ario.payload_hash").is_none() && nan.tag("ario.training_tx").is_none());

    common::oracle::check_items(dn.handle.items_dir());
    rt.block_on(dn.handle.shutdown());
}
