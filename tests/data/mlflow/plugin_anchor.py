"""Anchors an existing run with the ar-io-mlflow plugin itself (resumed with start_run(run_id)),
uploading to the given Turbo-compatible URL. Prints {"tx", "payload_hash"} as JSON.
Usage: python plugin_anchor.py TRACKING_URI RUN_ID UPLOAD_URL
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow
import ario_mlflow
from ario_mlflow.arweave import ArweaveAnchor

uri, run_id, upload = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
anchor = ArweaveAnchor()
anchor._upload_url = upload
with mlflow.start_run(run_id=run_id):
    result = ario_mlflow.anchor(arweave=anchor)
print(json.dumps({"tx": (result.get("anchor_result") or {}).get("tx_id"), "payload_hash": result["payload_hash"]}))
