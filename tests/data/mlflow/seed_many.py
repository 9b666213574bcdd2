"""Seeds many small lifecycle events fast (entity APIs, no model training), for crash tests and
benchmarks. Prints the counts as JSON. Usage: python seed_many.py TRACKING_URI RUNS VERSIONS SUFFIX
Each run has params, metrics and one dataset input with a distinct digest (→ a training and a
dataset event); VERSIONS of them are registered and moved to Staging (→ registration + promotion).
"""
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")
import requests
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param
from mlflow.tracking import MlflowClient

uri, runs, versions, suffix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
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
print(json.dumps({"experiment_id": exp, "runs": runs, "versions": versions, "model": name, "events": 2 * runs + 2 * versions}))
