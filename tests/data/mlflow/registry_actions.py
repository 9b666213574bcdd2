"""Registry changes made with MLflow's own client, for the webhook tests.

    registry_actions.py URI register MODEL RUN_ID   -> {"version": "N"}
    registry_actions.py URI alias MODEL ALIAS VERSION
    registry_actions.py URI delete-alias MODEL ALIAS
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
else:
    raise SystemExit(f"unknown action {action}")
