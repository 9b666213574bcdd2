"""Seeds finished runs over many training chains, trickling, for the Kafka scale-out test.
Usage: python seed_chains.py TRACKING_URI CHAINS RUNS_PER_CHAIN SUFFIX DELAY_S
CHAINS experiments (each its own training chain, exp/<id>); round-robin one run per experiment
at a time, each with params, a metric and one dataset input of its own digest (-> a training and
a dataset event), DELAY_S between runs. Prints the counts as JSON.
"""
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param
from mlflow.tracking import MlflowClient

uri, chains, per_chain, suffix, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
client = MlflowClient(uri)
exps = [client.create_experiment(f"chaos-{suffix}-{c}") for c in range(chains)]
now = int(time.time() * 1000)
n = 0
for i in range(per_chain):
    for c, exp in enumerate(exps):
        run = client.create_run(exp, run_name=f"c{c}-r{i}")
        rid = run.info.run_id
        client.log_batch(rid, metrics=[Metric("loss", 1.0 / (i + 1), now, 0)], params=[Param("i", str(i))])
        ds = Dataset(name=f"ds-{suffix}", digest=f"{c:04x}{i:04x}", source_type="local", source=json.dumps({"uri": f"file:///d/{c}/{i}.csv"}))
        client.log_inputs(rid, datasets=[DatasetInput(ds, tags=[InputTag("mlflow.data.context", "training")])])
        client.set_terminated(rid, "FINISHED")
        n += 1
        time.sleep(delay)
print(json.dumps({"experiments": exps, "runs": n, "events": 2 * n}))
