"""Seeds runs for the artifact-store tests with MLflow's own client (which writes the artifacts
to wherever the server says: its proxy, a bucket, a path) and prints their ids as JSON.

Runs: one with a logged sklearn model registered as version 1 of a model, one without any model,
and one whose model the test deletes from the store afterwards. Usage: python stores.py SUFFIX
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

suffix = sys.argv[1]
mlflow.set_experiment(f"ario-stores-{suffix}")
client = mlflow.tracking.MlflowClient()
rng = np.random.RandomState(1)
X = rng.rand(30, 3)
y = (X[:, 0] > 0.5).astype(int)
out = {}


def with_model(name, register=None):
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_params({"C": "1.0"})
        mlflow.log_metric("accuracy", 0.9)
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), name="model", registered_model_name=register
        )
    model = client.get_logged_model(info.model_id)
    return run.info.run_id, run.info.artifact_uri, model.artifact_location


model_name = f"stores-model-{suffix}"
out["run"], out["run_root"], out["model_root"] = with_model("with-model", register=model_name)
out["model_name"] = model_name
with mlflow.start_run(run_name="no-model") as run:
    mlflow.log_params({"C": "2.0"})
    mlflow.log_metric("accuracy", 0.5)
out["no_model_run"] = run.info.run_id
out["deleted_run"], _, out["deleted_model_root"] = with_model("deleted-model")
print(json.dumps(out))
