"""Seeds many small lifecycle events fast (entity APIs, no model training), for crash tests and
benchmarks. Prints the counts as JSON.
Usage: python seed_many.py TRACKING_URI RUNS VERSIONS SUFFIX [--models]
Each run has params, metrics and one dataset input with a distinct digest (→ a training and a
dataset event); VERSIONS of them are registered and moved to Staging (→ registration + promotion).
With --models every run also logs an MLflow 3 LoggedModel named "model" (MLmodel, a ~4 KB
model.pkl, conda.yaml, python_env.yaml, requirements.txt), as mlflow.<flavor>.log_model would,
through the entity APIs (no training, so seeding stays fast).
"""
import json
import os
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
import requests
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, Metric, Param
from mlflow.tracking import MlflowClient

uri, runs, versions, suffix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with_models = "--models" in sys.argv[5:]
client = MlflowClient(uri)
exp = client.create_experiment(f"crash-{suffix}")
now = int(time.time() * 1000)
run_ids = []
for i in range(runs):
    run = client.create_run(exp, run_name=f"r{i}")
    rid = run.info.run_id
    client.log_batch(rid, metrics=[Metric("loss", 1.0 / (i + 1), now, 0)], params=[Param("i", str(i))])
    ds = Dataset(name=f"ds-{suffix}", digest=f"{i:08x}", source_type="local", source=json.dumps({"uri": f"file:///d/{i}.csv"}))
    client.log_inputs(rid, datasets=[DatasetInput(ds, tags=[InputTag("mlflow.data.context", "training")])])
    if with_models:
        model = client.create_logged_model(exp, name="model", source_run_id=rid)
        with tempfile.TemporaryDirectory() as d:
            files = {
                "MLmodel": f"artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\nmodel_id: {model.model_id}\nrun_id: {rid}\n",
                "conda.yaml": "dependencies:\n- python=3.11\n- pip:\n  - mlflow\n  - scikit-learn\n",
                "python_env.yaml": "python: 3.11\ndependencies:\n- -r requirements.txt\n",
                "requirements.txt": "mlflow\nscikit-learn\n",
            }
            for fname, text in files.items():
                with open(os.path.join(d, fname), "w") as f:
                    f.write(text)
            with open(os.path.join(d, "model.pkl"), "wb") as f:
                f.write(os.urandom(4096))
            client.log_model_artifacts(model.model_id, d)
        client.finalize_logged_model(model.model_id, "READY")
        client.log_outputs(rid, [LoggedModelOutput(model.model_id, 0)])
    client.set_terminated(rid, "FINISHED")
    run_ids.append(rid)
name = f"crash-model-{suffix}"
if versions:
    client.create_registered_model(name)
for i in range(versions):
    rid = run_ids[i]
    r = requests.post(f"{uri}/api/2.0/mlflow/model-versions/create", json={"name": name, "source": f"runs:/{rid}/model", "run_id": rid})
    r.raise_for_status()
    v = r.json()["model_version"]["version"]
    requests.post(f"{uri}/api/2.0/mlflow/model-versions/transition-stage",
                  json={"name": name, "version": v, "stage": "Staging", "archive_existing_versions": False}).raise_for_status()
print(json.dumps({"experiment_id": exp, "runs": runs, "versions": versions, "model": name, "events": 2 * runs + 2 * versions, "models": with_models}))
