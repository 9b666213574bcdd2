"""A steady MLflow lifecycle load for scripts/soak: until STOP_FILE exists, every PERIOD seconds
one finished run (params, a metric, a dataset input; entity APIs, no training), and every few
runs a registered version moved through a stage, an alias set or moved, and served-model traces.
MLflow being restarted under it is expected: failed calls are retried after a pause. Prints one
JSON line of counts at the end.

Usage: python soak_load.py TRACKING_URI PERIOD STOP_FILE SUFFIX
"""
import json
import os
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
import mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Metric, Param
from mlflow.tracking import MlflowClient

uri, period, stop_file, suffix = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
counts = {"runs": 0, "versions": 0, "stages": 0, "aliases": 0, "traces": 0, "retries": 0}


def retry(f, *a, **k):
    for _ in range(120):
        try:
            return f(*a, **k)
        except Exception:  # noqa: BLE001 — MLflow restarting: wait and retry
            counts["retries"] += 1
            time.sleep(1)
    raise SystemExit("MLflow did not come back")


exp = retry(client.create_experiment, f"soak-{suffix}")
mlflow.set_experiment(experiment_id=exp)
model = f"soak-model-{suffix}"
retry(client.create_registered_model, model)
stages = ["Staging", "Production", "Archived"]
i = 0
while not os.path.exists(stop_file):
    started = time.time()
    run = retry(client.create_run, exp, run_name=f"soak-{i}")
    rid = run.info.run_id
    now = int(time.time() * 1000)
    ds = Dataset(name="soak-set", digest=f"d{i % 7}", source_type="local", source='{"uri": "/data"}', schema="")
    retry(
        client.log_batch,
        rid,
        metrics=[Metric("loss", 1.0 / (i + 1), now, 0)],
        params=[Param("i", str(i))],
    )
    retry(client.log_inputs, rid, [DatasetInput(ds, [InputTag("mlflow.data.context", "training")])])
    if i % 5 == 0:
        # A model (a LoggedModel named "model" with a few files) for the version registered below.
        lm = retry(client.create_logged_model, exp, name="model", source_run_id=rid)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "MLmodel"), "w") as f:
                f.write(f"artifact_path: model\nmodel_id: {lm.model_id}\nrun_id: {rid}\n")
            with open(os.path.join(d, "model.pkl"), "wb") as f:
                f.write(os.urandom(2048))
            retry(client.log_model_artifacts, lm.model_id, d)
        retry(client.finalize_logged_model, lm.model_id, "READY")
        retry(client.log_outputs, rid, [LoggedModelOutput(lm.model_id, 0)])
    retry(client.set_terminated, rid, "FINISHED")
    counts["runs"] += 1
    if i % 5 == 0:
        mv = retry(client.create_model_version, model, f"runs:/{rid}/model", rid)
        counts["versions"] += 1
        retry(client.transition_model_version_stage, model, mv.version, stages[(i // 5) % 3])
        counts["stages"] += 1
        retry(client.set_registered_model_alias, model, "live", mv.version)
        counts["aliases"] += 1
    if i % 3 == 0:
        # A trace served by nothing (a GenAI-style call): skipped as "no model" by the worker.
        @mlflow.trace
        def answer(q):
            return q[::-1]

        retry(answer, f"q{i}")
        counts["traces"] += 1
    i += 1
    time.sleep(max(0.0, period - (time.time() - started)))
print(json.dumps(counts))
