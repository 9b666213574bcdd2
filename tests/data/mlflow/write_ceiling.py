"""The MLflow server's own ceiling for per-trace anchoring: the three writes a minimal prediction
proof needs (the payload witness through the artifact proxy, `ario.payload_json`,
`ario.prediction_tx`), issued for TRACE_IDS straight from aiohttp at CONCURRENCY, with no worker,
no signing and no upload. Prints {"predictions", "seconds", "per_second", "calls_per_second"}.
Usage: python write_ceiling.py TRACKING_URI RUN_ARTIFACT_PATH CONCURRENCY TRACE_ID...
(RUN_ARTIFACT_PATH: the run's artifact root below `mlflow-artifacts:/`, e.g. `1/<run>/artifacts`.)
"""
import asyncio
import json
import sys
import time

import aiohttp

uri, root, conc, ids = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
payload = json.dumps({"bench": "x" * 300}).encode()


async def one(session, tid, sem):
    async with sem:
        r = await session.put(f"{uri}/api/2.0/mlflow-artifacts/artifacts/{root}/ario/predictions/{tid}/payload.json", data=payload)
        r.raise_for_status()
        for key in ("ario.payload_json", "ario.prediction_tx"):
            r = await session.patch(f"{uri}/api/3.0/mlflow/traces/{tid}/tags", json={"key": key + ".bench", "value": "v"})
            r.raise_for_status()


async def main():
    sem = asyncio.Semaphore(conc)
    async with aiohttp.ClientSession() as s:
        t0 = time.time()
        await asyncio.gather(*(one(s, t, sem) for t in ids))
        secs = time.time() - t0
    print(json.dumps({"predictions": len(ids), "seconds": secs, "per_second": len(ids) / secs,
                      "calls_per_second": 3 * len(ids) / secs}))


asyncio.run(main())
