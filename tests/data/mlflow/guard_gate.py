"""The plugin's own verify-status gate against the worker's guard.

    guard_gate.py MODEL_URI BASE_URL SECRET ASSET_ID
prints {"loaded": true} or {"loaded": false, "error": "<exception class>", "message": …}
and, separately, the raw VerifyStatusClient answer (or its error class).
"""
import json
import sys

from ario_mlflow import VerifiedModel, VerifyStatusClient

model_uri, base, secret, asset = sys.argv[1:5]
out = {}
client = VerifyStatusClient(base, secret=secret)
try:
    s = client.get(asset)
    out["status"] = {"outcome": s.outcome, "stale": s.stale, "current_tx_id": s.current_tx_id,
                     "policy_hash": s.policy_hash, "max_age": s.max_age,
                     "last_verified_at": s.last_verified_at}
except Exception as e:  # noqa: BLE001 - the class is the answer
    out["status_error"] = type(e).__name__
try:
    VerifiedModel(model_uri, asset_id=asset, verify_status_client=client, on_failure="raise")
    out["loaded"] = True
except Exception as e:  # noqa: BLE001
    out["loaded"] = False
    out["error"] = type(e).__name__
    out["message"] = str(e)[:500]
print(json.dumps(out))
