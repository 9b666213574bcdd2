"""Anchors every finished run of an experiment with the ar-io-mlflow plugin (resumed with
start_run(run_id=…)), uploading to UPLOAD_URL; prints {"runs", "seconds"} as JSON.
Usage: python plugin_anchor_many.py TRACKING_URI EXPERIMENT_ID UPLOAD_URL"""
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")
import mlflow
import ario_mlflow
from ario_mlflow.arweave import ArweaveAnchor

uri, exp, upload = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
client = mlflow.tracking.MlflowClient(uri)
runs = [r.info.run_id for r in client.search_runs([exp], max_results=1000)]
anchor = ArweaveAnchor()
anchor._upload_url = upload
t = time.perf_counter()
for rid in runs:
    with mlflow.start_run(run_id=rid):
        ario_mlflow.anchor(arweave=anchor)
print(json.dumps({"runs": len(runs), "seconds": time.perf_counter() - t}))
