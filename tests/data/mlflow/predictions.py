"""Served-model predictions for the prediction tests and benchmark; prints JSON on its last line.

  python predictions.py URI seed SUFFIX VERSIONS
      trains VERSIONS sklearn models (one run each) and registers them as versions 1..VERSIONS
      of `pred-model-SUFFIX`; prints {"model_name", "model_ids": [...], "runs": [...]}.
  python predictions.py URI traces SUFFIX MODEL_IDS PER_VERSION
      in experiment `pred-traces-SUFFIX`, makes PER_VERSION `@mlflow.trace`d predictions served
      by each LoggedModel of the comma-separated MODEL_IDS (MLflow 3's `set_active_model`);
      prints {"experiment_id", "traces": [...], "seconds", "per_second"}.
  python predictions.py URI plugin SUFFIX MODEL_NAME VERSION N UPLOAD_URL
      the plugin's `VerifiedModel.predict()` inside an `@mlflow.trace`d function, N times, its
      uploads pointed at UPLOAD_URL; waits for every anchor; prints {"experiment_id",
      "seconds", "per_second", "anchored"}.
"""
import json
import os
import sys
import time
import warnings

# MLflow's asynchronous trace export drops traces (or their metadata) when a tight loop outruns
# its queue: export each trace before the next, so every prediction made is a complete trace.
# The plugin's side keeps MLflow's default (its rate is measured as a serving process sees it).
if sys.argv[2:3] != ["plugin"]:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")

warnings.filterwarnings("ignore")
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

uri, mode, suffix = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
client = mlflow.tracking.MlflowClient()
rng = np.random.RandomState(7)
X = rng.rand(40, 3)
y = (X[:, 0] > 0.5).astype(int)

if mode == "seed":
    versions = int(sys.argv[4])
    mlflow.set_experiment(f"pred-models-{suffix}")
    name = f"pred-model-{suffix}"
    out = {"model_name": name, "model_ids": [], "runs": []}
    for v in range(versions):
        with mlflow.start_run(run_name=f"model-{v + 1}") as run:
            mlflow.log_params({"C": str(1.0 + v)})
            mlflow.log_metric("accuracy", 0.9)
            clf = LogisticRegression(C=1.0 + v).fit(X, y)
            info = mlflow.sklearn.log_model(clf, name="model", registered_model_name=name)
        out["model_ids"].append(info.model_id)
        out["runs"].append(run.info.run_id)
    print(json.dumps(out))
elif mode == "traces":
    model_ids, per_version = sys.argv[4].split(","), int(sys.argv[5])
    exp = mlflow.set_experiment(f"pred-traces-{suffix}")
    clf = LogisticRegression().fit(X, y)

    @mlflow.trace
    def predict(features):
        return clf.predict(np.array([features])).tolist()

    traces = []
    started = time.time()
    for model_id in model_ids:
        mlflow.set_active_model(model_id=model_id)
        for i in range(per_version):
            predict([float(i % 10) / 10, 0.5, 0.25])
            traces.append(mlflow.get_last_active_trace_id())
    mlflow.flush_trace_async_logging()
    seconds = time.time() - started
    for t in traces[:: max(1, len(traces) // 20)] + traces[-1:]:
        info = client.get_trace_info(t) if hasattr(client, "get_trace_info") else client.get_trace(t).info
        assert info.trace_metadata.get("mlflow.modelId"), f"trace {t} lost its model id"
    print(json.dumps({"experiment_id": exp.experiment_id, "traces": traces,
                      "seconds": seconds, "per_second": len(traces) / seconds}))
elif mode == "plugin":
    name, version, n, upload = sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]
    from ario_mlflow.arweave import ArweaveAnchor
    from ario_mlflow.model import VerifiedModel

    exp = mlflow.set_experiment(f"pred-plugin-{suffix}")
    anchor = ArweaveAnchor()
    anchor._upload_url = upload
    model = VerifiedModel(f"models:/{name}/{version}", anchor=anchor)

    @mlflow.trace
    def predict(features):
        return model.predict(features)

    started = time.time()
    results = [predict([float(i % 10) / 10, 0.5, 0.25]) for i in range(n)]
    anchored = sum(1 for r in results if r.wait_for_anchor(timeout=300))
    mlflow.flush_trace_async_logging()
    seconds = time.time() - started
    print(json.dumps({"experiment_id": exp.experiment_id, "seconds": seconds,
                      "per_second": n / seconds, "anchored": anchored}))
elif mode == "tamper":
    # The suffix argument is the sqlite path here: rewrite a trace's root-span output in place.
    import sqlite3

    db, trace_id = suffix, sys.argv[4]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT span_id, content FROM spans WHERE trace_id = ?", (trace_id,)).fetchall()
    assert rows, f"no spans of {trace_id}"
    for span_id, content in rows:
        span = json.loads(content)
        if span.get("parent_span_id") is None:
            span["attributes"]["mlflow.spanOutputs"] = json.dumps([42])
            con.execute("UPDATE spans SET content = ? WHERE trace_id = ? AND span_id = ?",
                        (json.dumps(span), trace_id, span_id))
    con.commit()
    print(json.dumps({"tampered": trace_id}))
else:
    sys.exit(f"unknown mode {mode}")
