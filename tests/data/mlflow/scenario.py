"""Seeds a realistic MLflow lifecycle for the integration tests and prints its ids as JSON.

Runs: sklearn training with two dataset inputs (contexts training/evaluation), unicode params,
metrics that need half-even rounding, nested run artifacts, a LoggedModel registered as a model
version, a stage transition, and a prediction trace linked to the model. Plus a run with a NaN
metric. Usage: python scenario.py TRACKING_URI SUFFIX
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

uri, suffix = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment(f"ario-scenario-{suffix}")
client = mlflow.tracking.MlflowClient()
rng = np.random.RandomState(0)
X = rng.rand(40, 3)
y = (X[:, 0] > 0.5).astype(int)
df = pd.DataFrame(X, columns=["a", "b", "c"])
df["y"] = y


def train(name, register=None, nan=False, extra_model_files=False):
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_params({"C": "1.0", "max_iter": "200", "ünïcödé-param": "値🚀 ✓"})
        mlflow.log_metric("accuracy", 0.9733333333)
        mlflow.log_metric("exact_tie", 0.0078125)
        mlflow.log_metric("integral", 3.0)
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 3), step=step)
        if nan:
            mlflow.log_metric("broken", float("nan"))
        train_ds = mlflow.data.from_pandas(df, source="s3://bucket/train.csv", name="train-set", targets="y")
        mlflow.log_input(train_ds, context="training")
        mlflow.log_input(mlflow.data.from_pandas(df.head(10), name="eval-set"), context="evaluation")
        mlflow.log_dict({"labels": [0, 1]}, "meta/deep/labels.json")
        if extra_model_files:
            # Run files under model/ merge with the LoggedModel's files (MLflow 3 runs:/ resolution):
            # a nested folder, an empty file, and registry bookkeeping that must be excluded.
            mlflow.log_text("notes", "model/extra/deep/notes.txt")
            mlflow.log_text("", "model/extra/empty.txt")
            mlflow.log_text("bookkeeping", "model/registered_model_meta")
        clf = LogisticRegression().fit(X, y)
        info = mlflow.sklearn.log_model(clf, name="model", registered_model_name=register)
    return run.info.run_id, info, clf


out = {}
out["parity_run"], _, _ = train("parity", extra_model_files=True)
model_name = f"scenario-model-{suffix}"
out["run"], info, clf = train("registered", register=model_name)
out["model_name"] = model_name
out["model_id"] = info.model_id
client.transition_model_version_stage(model_name, "1", "Staging")
client.set_registered_model_alias(model_name, "champion", "1")
out["nan_run"], _, _ = train("nan-metric", nan=True)

mlflow.set_active_model(model_id=info.model_id)


@mlflow.trace
def predict(features):
    return clf.predict(np.array([features])).tolist()


for features in ([0.9, 0.2, 0.3], [0.4, 0.8, 0.1], [0.1, 0.2, 0.3]):
    predict(features)
out["trace"] = mlflow.get_last_active_trace_id()
mlflow.flush_trace_async_logging()
print(json.dumps(out))
