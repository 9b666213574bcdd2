"""A whole lifecycle anchored by the ar-io-mlflow plugin itself, uploading to UPLOAD_URL:
training (anchor() inside the run, with a dataset input), registration and a stage transition
through ArioMlflowClient, and a prediction through VerifiedModel. Prints the ids as JSON.
Usage: python plugin_lifecycle.py TRACKING_URI UPLOAD_URL SUFFIX
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow
import numpy as np
import pandas as pd
import ario_mlflow
from ario_mlflow.arweave import ArweaveAnchor
from ario_mlflow.client import ArioMlflowClient
from ario_mlflow.model import VerifiedModel
from sklearn.linear_model import LogisticRegression

uri, upload, suffix = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment(f"plugin-lifecycle-{suffix}")
anchor = ArweaveAnchor()
anchor._upload_url = upload
rng = np.random.RandomState(1)
X = rng.rand(30, 3)
y = (X[:, 1] > 0.5).astype(int)
df = pd.DataFrame(X, columns=["a", "b", "c"])
df["y"] = y
with mlflow.start_run(run_name="plugin-trained") as run:
    mlflow.log_params({"C": "0.5"})
    mlflow.log_metric("accuracy", 0.9)
    mlflow.log_input(mlflow.data.from_pandas(df, source="s3://bucket/p.csv", name="plugin-set", targets="y"), context="training")
    mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model")
    trained = ario_mlflow.anchor(arweave=anchor)
rid = run.info.run_id
name = f"plugin-model-{suffix}"
client = ArioMlflowClient(anchor=anchor)
client.create_registered_model(name)
mv = client.create_model_version(name, source=f"runs:/{rid}/model", run_id=rid)
version = str(mv.version)
assert client.wait_for_anchor("registration", name, version, timeout=120)
reg = client.anchor_status("registration", name, version)
client.transition_model_version_stage(name, version, "Staging")
assert client.wait_for_anchor("promotion", name, version, timeout=120)
promo = client.anchor_status("promotion", name, version)
model = VerifiedModel(f"models:/{name}/{version}", anchor=anchor)
result = model.predict({"a": 0.1, "b": 0.7, "c": 0.3})
assert result.wait_for_anchor(timeout=120)
print(json.dumps({
    "run": rid, "training_tx": (trained.get("anchor_result") or {}).get("tx_id"),
    "model_name": name, "version": version,
    "registration": reg, "promotion": promo,
    "prediction_tx": result.tx_id, "proof_status": result.proof_status,
    "trace": (result.record or {}).get("mlflow_trace_id"), "decision_id": result.decision_id,
}))
