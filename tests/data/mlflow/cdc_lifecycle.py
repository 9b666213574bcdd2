"""An MLflow lifecycle for the change-data-capture tests (MLflow on PostgreSQL, Debezium).

Prints one JSON object per line, flushed, as each step is done ({"step": ..., "at_ms": ...}),
so the test can act mid-stream (kill Kafka Connect, kill the worker) while it goes on.

  python cdc_lifecycle.py URI snapshot SUFFIX
      before the connector exists: run (two datasets) registered as `cdc-snap-SUFFIX` v1,
      promoted to Production, alias `snap` → v1, one trace served by it.
  python cdc_lifecycle.py URI live SUFFIX PAUSE
      run A registered as `cdc-live-SUFFIX` v1, run B as v2; v1 None→Staging→Production→Archived;
      alias `champion` → v1, moved to v2, deleted; three traces served by v1 — PAUSE seconds
      between the steps.
  python cdc_lifecycle.py URI latency SUFFIX N PAUSE
      N aliases `lat-<i>` set on `cdc-live-SUFFIX` v2, PAUSE seconds apart (the API call's
      return time in each line).
"""
import json
import os
import sys
import time
import warnings

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
warnings.filterwarnings("ignore")
import mlflow
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

uri, mode, suffix = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
client = mlflow.tracking.MlflowClient()
rng = np.random.RandomState(3)
X = rng.rand(40, 3)
y = (X[:, 0] > 0.5).astype(int)
df = pd.DataFrame(X, columns=["a", "b", "c"])
df["y"] = y


def say(step, **extra):
    print(json.dumps({"step": step, "at_ms": int(time.time() * 1000), **extra}), flush=True)


def train(run_name, model_name, c=1.0):
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({"C": str(c), "max_iter": "100"})
        mlflow.log_metric("accuracy", 0.91)
        mlflow.log_input(
            mlflow.data.from_pandas(df, source="s3://bucket/cdc-train.csv", name="cdc-train", targets="y"),
            context="training",
        )
        mlflow.log_input(mlflow.data.from_pandas(df.head(8), name="cdc-eval"), context="evaluation")
        clf = LogisticRegression(C=c).fit(X, y)
        info = mlflow.sklearn.log_model(clf, name="model", registered_model_name=model_name)
    return run.info.run_id, info, clf


def traces(info, clf, n):
    mlflow.set_active_model(model_id=info.model_id)

    @mlflow.trace
    def predict(features):
        return clf.predict(np.array([features])).tolist()

    ids = []
    for i in range(n):
        predict([0.1 * (i + 1), 0.5, 0.2])
        ids.append(mlflow.get_last_active_trace_id())
    mlflow.flush_trace_async_logging()
    return ids


if mode == "snapshot":
    mlflow.set_experiment(f"cdc-snap-{suffix}")
    name = f"cdc-snap-{suffix}"
    run_id, info, clf = train("snap", name)
    client.transition_model_version_stage(name, "1", "Production")
    client.set_registered_model_alias(name, "snap", "1")
    say("done", model_name=name, run=run_id, traces=traces(info, clf, 1))
elif mode == "live":
    pause = float(sys.argv[4])
    mlflow.set_experiment(f"cdc-live-{suffix}")
    name = f"cdc-live-{suffix}"
    run_a, info_a, clf_a = train("live-a", name, 1.0)
    say("registered-1", model_name=name, run=run_a)
    time.sleep(pause)
    run_b, _, _ = train("live-b", name, 2.0)
    say("registered-2", run=run_b)
    time.sleep(pause)
    for stage in ("Staging", "Production", "Archived"):
        client.transition_model_version_stage(name, "1", stage)
        say(f"stage-{stage}")
        time.sleep(pause)
    client.set_registered_model_alias(name, "champion", "1")
    say("alias-set")
    time.sleep(pause)
    client.set_registered_model_alias(name, "champion", "2")
    say("alias-moved")
    time.sleep(pause)
    client.delete_registered_model_alias(name, "champion")
    say("alias-deleted")
    time.sleep(pause)
    say("done", traces=traces(info_a, clf_a, 3))
elif mode == "latency":
    n, pause = int(sys.argv[4]), float(sys.argv[5])
    name = f"cdc-live-{suffix}"
    for i in range(n):
        client.set_registered_model_alias(name, f"lat-{i}", "2")
        say("alias", alias=f"lat-{i}")
        time.sleep(pause)
    say("done")
else:
    sys.exit(f"unknown mode {mode}")
