"""Registry changes made with MLflow's own client, for the webhook tests.

    registry_actions.py URI register MODEL RUN_ID   -> {"version": "N"}
    registry_actions.py URI alias MODEL ALIAS VERSION
    registry_actions.py URI delete-alias MODEL ALIAS
    registry_actions.py URI run NAME [TAG=VALUE]   -> {"run_id": "..."} (a finished run)
"""
import json
import sys

import mlflow
from mlflow import MlflowClient

uri, action = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
if action == "register":
    model, run_id = sys.argv[3], sys.argv[4]
    mv = mlflow.register_model(f"runs:/{run_id}/model", model)
    print(json.dumps({"version": str(mv.version)}))
elif action == "alias":
    client.set_registered_model_alias(sys.argv[3], sys.argv[4], sys.argv[5])
    print(json.dumps({"ok": True}))
elif action == "delete-alias":
    client.delete_registered_model_alias(sys.argv[3], sys.argv[4])
    print(json.dumps({"ok": True}))
elif action == "run":
    with mlflow.start_run(run_name=sys.argv[3]) as run:
        mlflow.log_param("p", "1")
        mlflow.log_metric("m", 0.5)
        for kv in sys.argv[4:]:
            k, v = kv.split("=", 1)
            mlflow.set_tag(k, v)
    print(json.dumps({"run_id": run.info.run_id}))
else:
    raise SystemExit(f"unknown action {action}")
