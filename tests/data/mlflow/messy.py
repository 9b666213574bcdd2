"""An ordinary, messy MLflow registry for tests/messy_registry.rs: the workflows that broke
proofs (issue 23), each a few lines. Prints what it made as one JSON line.

    messy.py URI UPLOAD_URL SUFFIX setup                 every scenario's first phase
    messy.py URI UPLOAD_URL SUFFIX resume RUN_ID         re-open a finished run, log more, finish
    messy.py URI UPLOAD_URL SUFFIX recreate NAME         delete a model, re-create it, register v1
    messy.py URI UPLOAD_URL SUFFIX rename OLD NEW        rename a model, register v2, promote it
    messy.py URI UPLOAD_URL SUFFIX plugin-promote NAME V STAGE   the plugin's ArioMlflowClient
    messy.py URI UPLOAD_URL SUFFIX delete-run RUN_ID | restore-run RUN_ID
    messy.py URI UPLOAD_URL SUFFIX set-trace-tag TRACE KEY VALUE
    messy.py URI UPLOAD_URL SUFFIX finished-run NAME     a plain finished run
    messy.py URI UPLOAD_URL SUFFIX registry NAME STAGE ALIAS   a model's v1, staged, aliased
    messy.py URI UPLOAD_URL SUFFIX trace-without-spans   a trace logged OK whose spans never come

UPLOAD_URL is where the plugin uploads (devnet); the plugin's environment (signing key, CA
bundle, gateways) comes from the caller.
"""
import json
import os
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

uri, upload, suffix, action = sys.argv[1:5]
args = sys.argv[5:]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment(f"messy-{suffix}")
client = MlflowClient(uri)
rng = np.random.RandomState(7)
X = rng.rand(30, 3)
y = (X[:, 0] > 0.5).astype(int)
out = {}


def fit():
    return LogisticRegression().fit(X, y)


def train(run_name, model_name="model", register=None, extra_models=()):
    """A finished run with params, a metric and a model logged as `model_name`."""
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({"C": "1.0", "seed": "7"})
        mlflow.log_metric("accuracy", 0.91)
        info = mlflow.sklearn.log_model(fit(), name=model_name, registered_model_name=register)
        others = [mlflow.sklearn.log_model(fit(), name=m) for m in extra_models]
    return run.info.run_id, info, others


def plugin():
    from ario_mlflow.arweave import ArweaveAnchor
    from ario_mlflow.client import ArioMlflowClient

    anchor = ArweaveAnchor()
    anchor._upload_url = upload
    return anchor, ArioMlflowClient(anchor=anchor)


if action == "setup":
    # Traces with no model behind them, before any model is active: a GenAI-style function, and
    # one that fails.
    @mlflow.trace
    def chat(question):
        return question.upper()

    @mlflow.trace
    def broken(x):
        raise ValueError("no")

    chat("hello?")
    out["trace_no_model"] = mlflow.get_last_active_trace_id()
    try:
        broken(1)
    except ValueError:
        pass
    out["trace_error"] = mlflow.get_last_active_trace_id()

    # 1. Two versions from one run; the run registered into a second model; a copied version.
    two = f"messy-two-{suffix}"
    out["two_run"], _, _ = train("two", register=two)
    r = out["two_run"]
    out["two_v2"] = client.create_model_version(two, f"runs:/{r}/model", r).version
    other = f"messy-other-{suffix}"
    client.create_registered_model(other)
    client.create_model_version(other, f"runs:/{r}/model", r)
    copy = f"messy-copy-{suffix}"
    client.copy_model_version(f"models:/{two}/1", copy)
    out.update(two=two, other=other, copy=copy)

    # 2. A model logged under another name than `model`.
    clf = f"messy-clf-{suffix}"
    out["clf_run"], clf_info, _ = train("clf", model_name="clf", register=clf)
    out["clf"] = clf

    # 3. A run that will be re-opened after it is anchored (registered, so it can be audited).
    out["resumed_model"] = f"messy-resumed-{suffix}"
    out["resumed_run"], _, _ = train("resumed", register=out["resumed_model"])

    # 4. A model that will be deleted and re-created: in Production, with an alias.
    re_name = f"messy-re-{suffix}"
    out["re_run"], _, _ = train("re", register=re_name)
    client.transition_model_version_stage(re_name, "1", "Production")
    client.set_registered_model_alias(re_name, "champion", "1")
    out["re"] = re_name

    # 5. A model that will be renamed: staged, with an alias.
    ren = f"messy-ren-{suffix}"
    out["ren_run"], _, _ = train("ren", register=ren)
    client.transition_model_version_stage(ren, "1", "Staging")
    client.set_registered_model_alias(ren, "live", "1")
    out["ren"] = ren

    # 6. Predictions: one served by the clf version; one served by an unregistered model of a
    # run whose other model is registered (it must not be attributed to that version).
    two_models = f"messy-pair-{suffix}"
    out["pair_run"], _, (b_info,) = train("pair", model_name="a", register=two_models, extra_models=("b",))
    out["pair"] = two_models
    model = fit()

    @mlflow.trace
    def predict(features):
        return model.predict(np.array([features])).tolist()

    mlflow.set_active_model(model_id=clf_info.model_id)
    predict([0.9, 0.1, 0.2])
    out["trace_clf"] = mlflow.get_last_active_trace_id()
    mlflow.set_active_model(model_id=b_info.model_id)
    predict([0.2, 0.1, 0.2])
    out["trace_unregistered"] = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()

    # 7. Beside the plugin: training anchored by anchor(), registration and promotion by
    # ArioMlflowClient, a prediction by VerifiedModel.
    import ario_mlflow
    from ario_mlflow.model import VerifiedModel

    anchor, pclient = plugin()
    with mlflow.start_run(run_name="plugin") as run:
        mlflow.log_param("C", "0.5")
        mlflow.log_metric("accuracy", 0.8)
        mlflow.sklearn.log_model(fit(), name="model")
        ario_mlflow.anchor(arweave=anchor, allow_empty_dataset_inputs=True)
    pr = run.info.run_id
    plug = f"messy-plug-{suffix}"
    pclient.create_registered_model(plug)
    pclient.create_model_version(plug, source=f"runs:/{pr}/model", run_id=pr)
    assert pclient.wait_for_anchor("registration", plug, "1", timeout=120)
    pclient.transition_model_version_stage(plug, "1", "Staging")
    assert pclient.wait_for_anchor("promotion", plug, "1", timeout=120)
    result = VerifiedModel(f"models:/{plug}/1", anchor=anchor).predict({"a": 0.1, "b": 0.7, "c": 0.3})
    assert result.wait_for_anchor(timeout=120)
    out.update(plugin_run=pr, plug=plug, plugin_trace=(result.record or {}).get("mlflow_trace_id"))

    # 8. LoggedModels with no run, registered: one with files, an external model, one empty.
    ext = f"messy-ext-{suffix}"
    lm = mlflow.initialize_logged_model(name="ext-model")
    files = tempfile.mkdtemp()
    with open(os.path.join(files, "weights.bin"), "wb") as f:
        f.write(b"\x00\x01weights")
    with open(os.path.join(files, "MLmodel"), "w") as f:
        f.write("flavors: {}\n")
    client.log_model_artifacts(lm.model_id, files)
    client.finalize_logged_model(lm.model_id, "READY")
    client.create_registered_model(ext)
    client.create_model_version(ext, f"models:/{lm.model_id}", model_id=lm.model_id)
    # An external model (a GenAI app): MLflow writes its MLmodel, nothing else.
    app = f"messy-app-{suffix}"
    external = mlflow.create_external_model(name="gen-app")
    client.create_registered_model(app)
    client.create_model_version(app, f"models:/{external.model_id}", model_id=external.model_id)
    # A LoggedModel with no files at all.
    gen = f"messy-gen-{suffix}"
    empty = mlflow.initialize_logged_model(name="empty")
    client.finalize_logged_model(empty.model_id, "READY")
    client.create_registered_model(gen)
    client.create_model_version(gen, f"models:/{empty.model_id}", model_id=empty.model_id)
    out.update(ext=ext, ext_model=lm.model_id, app=app, gen=gen)
elif action == "resume":
    (run_id,) = args
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric("eval_auc", 0.87)
    out["end_time"] = client.get_run(run_id).info.end_time
elif action == "recreate":
    (name,) = args
    client.delete_registered_model(name)
    run_id, _, _ = train("re-again", register=name)
    out.update(run=run_id, created=client.get_model_version(name, "1").creation_timestamp)
elif action == "rename":
    old, new = args
    client.rename_registered_model(old, new)
    run_id = client.get_model_version(new, "1").run_id
    v2 = client.create_model_version(new, f"runs:/{run_id}/model", run_id).version
    client.transition_model_version_stage(new, v2, "Production")
    client.set_registered_model_alias(new, "live", v2)
    out.update(version=v2)
elif action == "plugin-promote":
    name, version, stage = args
    _, pclient = plugin()
    pclient.transition_model_version_stage(name, version, stage)
    assert pclient.wait_for_anchor("promotion", name, version, timeout=120)
    out["promotion"] = pclient.anchor_status("promotion", name, version)
elif action == "delete-run":
    client.delete_run(args[0])
elif action == "restore-run":
    client.restore_run(args[0])
elif action == "set-trace-tag":
    trace, key, value = args
    client.set_trace_tag(trace, key, value)
elif action == "registry":
    # A registered model: NAME v1 from a new run, in STAGE, with ALIAS.
    name, stage, alias = args
    run_id, _, _ = train(f"registry-{name}", register=name)
    client.transition_model_version_stage(name, "1", stage)
    client.set_registered_model_alias(name, alias, "1")
    out["run"] = run_id
elif action == "trace-without-spans":
    # A trace whose info is logged OK but whose spans never arrive.
    import time
    import uuid

    from mlflow.entities import TraceInfo, TraceLocation, TraceState

    exp = mlflow.get_experiment_by_name(f"messy-{suffix}")
    info = TraceInfo(
        trace_id="tr-" + uuid.uuid4().hex,
        trace_location=TraceLocation.from_experiment_id(exp.experiment_id),
        request_time=int(time.time() * 1000),
        state=TraceState.OK,
        execution_duration=5,
        trace_metadata={},
        tags={},
    )
    out["trace"] = client._tracking_client.store.start_trace(info).trace_id
elif action == "finished-run":
    run_id, _, _ = train(args[0])
    out["run"] = run_id
    out["end_time"] = client.get_run(run_id).info.end_time
else:
    raise SystemExit(f"unknown action {action}")
print(json.dumps(out))
