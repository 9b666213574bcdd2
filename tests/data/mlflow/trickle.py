"""Creates finished runs one at a time, INTERVAL seconds apart, and prints
{run_id: end_time_ms} as JSON. Usage: python trickle.py TRACKING_URI COUNT INTERVAL"""
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

uri, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
client = MlflowClient(uri)
exp = client.create_experiment(f"latency-{int(time.time())}")
ends = {}
for i in range(count):
    run = client.create_run(exp)
    rid = run.info.run_id
    client.log_batch(rid, metrics=[Metric("loss", 1.0 / (i + 1), int(time.time() * 1000), 0)], params=[Param("i", str(i))])
    end = int(time.time() * 1000)
    client.set_terminated(rid, "FINISHED", end_time=end)
    ends[rid] = end
    time.sleep(interval)
print(json.dumps(ends))
