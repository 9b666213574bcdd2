"""MLflow 2.x (no LoggedModels, no v3 traces): one plain finished run and one run whose model is
registered, made with MLflow 2's own client. Prints their ids as JSON.
Usage: python mlflow2_seed.py TRACKING_URI
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("mlflow2")
X = np.random.RandomState(0).rand(20, 3)
y = (X[:, 0] > 0.5).astype(int)
out = {"mlflow": mlflow.__version__}
with mlflow.start_run(run_name="plain") as r:
    mlflow.log_param("C", "0.5")
    mlflow.log_metric("acc", 0.8)
out["plain_run"] = r.info.run_id
with mlflow.start_run(run_name="registered") as r:
    mlflow.log_param("C", "1.0")
    mlflow.log_metric("acc", 0.9)
    mlflow.sklearn.log_model(LogisticRegression().fit(X, y), "model", registered_model_name="m2-model")
out["registered_run"] = r.info.run_id
print(json.dumps(out))
