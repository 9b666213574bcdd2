#!/usr/bin/env python3
"""Grows an anchored MLflow registry in place by copying rows in MLflow's own database, so
benchmarks can reach 100,000 runs, 5,000 registered models and 100,000 traces in seconds (seeding
that many through MLflow's API takes hours). MLflow serves the copies like any row.

    inflate_registry.py DB RUNS MODELS TRACES [--keep-times]

DB is a sqlite file path or a postgresql:// URL (psycopg2, as MLflow itself uses). Copies, of
templates the worker already anchored (their `ario.*` tags copied with them, so they read as
anchored and an idle poll finds nothing to do):
  * RUNS finished runs (an anchored run's row and tags; same end_time, so they are old);
  * MODELS registered models, each with one version (an anchored version's row and tags, stage
    None, no alias), created one millisecond apart;
  * TRACES OK traces (an anchored trace's row and tags).
The copies are dated a day before their template (run end and start times, version and model
times, trace times) — an old registry, as a real one of that size is — unless --keep-times
(which makes every copy look just finished: each poll's overlap window then re-reads them all).
Extends ../shared/tools/mlflow_inflate.py (runs and traces, sqlite only) with models and
PostgreSQL.
"""
import sys
import uuid

db, n_runs, n_models, n_traces = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
AGE = 0 if "--keep-times" in sys.argv[5:] else 86_400_000


def aged(row, cols, names):
    for n in names:
        if n in cols and row[cols.index(n)] is not None:
            row[cols.index(n)] = row[cols.index(n)] - AGE
if db.startswith("postgresql"):
    import psycopg2

    conn = psycopg2.connect(db.replace("postgresql+psycopg2://", "postgresql://"))
    P = "%s"

    def columns(cur, table):
        cur.execute(
            "select column_name from information_schema.columns where table_name=%s order by ordinal_position",
            (table,),
        )
        return [r[0] for r in cur.fetchall()]
else:
    import sqlite3

    conn = sqlite3.connect(db)
    P = "?"

    def columns(cur, table):
        return [r[1] for r in cur.execute(f"pragma table_info({table})").fetchall()]


cur = conn.cursor()


def one(sql, args=()):
    cur.execute(sql.replace("?", P), args)
    return cur.fetchone()


def rows(sql, args=()):
    cur.execute(sql.replace("?", P), args)
    return cur.fetchall()


def insert(table, cols, values):
    if values:
        cur.executemany(
            f"insert into {table} ({','.join(cols)}) values ({','.join([P] * len(cols))})", values
        )


added = {"runs": 0, "models": 0, "traces": 0}
if n_runs:
    tpl = one(
        "select r.run_uuid from runs r join tags t on t.run_uuid=r.run_uuid "
        "where t.key='ario.training_tx' and r.status='FINISHED' limit 1"
    )
    if not tpl:
        sys.exit("no anchored template run")
    cols = columns(cur, "runs")
    row = one(f"select {','.join(cols)} from runs where run_uuid=?", tpl)
    tags = rows("select key, value from tags where run_uuid=?", tpl)
    for start in range(0, n_runs, 5000):
        runs, rtags = [], []
        for _ in range(min(5000, n_runs - start)):
            u = uuid.uuid4().hex
            r = list(row)
            r[cols.index("run_uuid")] = u
            if r[cols.index("artifact_uri")]:
                r[cols.index("artifact_uri")] = r[cols.index("artifact_uri")].replace(tpl[0], u)
            aged(r, cols, ["start_time", "end_time"])
            runs.append(r)
            rtags += [(k, v, u) for k, v in tags]
        insert("runs", cols, runs)
        insert("tags", ["key", "value", "run_uuid"], rtags)
    added["runs"] = n_runs
if n_models:
    tpl = one(
        "select name, version from model_versions mv where exists (select 1 from model_version_tags t "
        "where t.name=mv.name and t.version=mv.version and t.key='ario.registration_tx') limit 1"
    )
    if not tpl:
        sys.exit("no anchored template version")
    name, version = tpl
    rm_cols = columns(cur, "registered_models")
    mv_cols = columns(cur, "model_versions")
    rm_row = one(f"select {','.join(rm_cols)} from registered_models where name=?", (name,))
    mv_row = one(
        f"select {','.join(mv_cols)} from model_versions where name=? and version=?", (name, version)
    )
    rm_tags = rows("select key, value from registered_model_tags where name=?", (name,))
    mv_tags = rows(
        "select key, value from model_version_tags where name=? and version=?", (name, version)
    )
    ws = "workspace" in rm_cols
    for start in range(0, n_models, 2000):
        rms, mvs, rts, mts = [], [], [], []
        for i in range(start, min(n_models, start + 2000)):
            new = f"{name}-copy-{uuid.uuid4().hex[:12]}"
            r = list(rm_row)
            r[rm_cols.index("name")] = new
            r[rm_cols.index("creation_time")] = (r[rm_cols.index("creation_time")] or 0) - 1 - i
            aged(r, rm_cols, ["creation_time", "last_updated_time"])
            rms.append(r)
            v = list(mv_row)
            v[mv_cols.index("name")] = new
            v[mv_cols.index("current_stage")] = "None"
            aged(v, mv_cols, ["creation_time", "last_updated_time"])
            mvs.append(v)
            w = [rm_row[rm_cols.index("workspace")]] if ws else []
            rts += [tuple([k, val, new] + w) for k, val in rm_tags]
            mts += [tuple([k, val, new, mv_row[mv_cols.index("version")]] + w) for k, val in mv_tags]
        insert("registered_models", rm_cols, rms)
        insert("model_versions", mv_cols, mvs)
        extra = ["workspace"] if ws else []
        insert("registered_model_tags", ["key", "value", "name"] + extra, rts)
        insert("model_version_tags", ["key", "value", "name", "version"] + extra, mts)
    added["models"] = n_models
if n_traces:
    tpl = one(
        "select ti.request_id from trace_info ti join trace_tags tt on tt.request_id=ti.request_id "
        "where tt.key='ario.prediction_tx' limit 1"
    )
    if not tpl:
        sys.exit("no anchored template trace")
    cols = columns(cur, "trace_info")
    row = one(f"select {','.join(cols)} from trace_info where request_id=?", tpl)
    ttags = rows("select key, value from trace_tags where request_id=?", tpl)
    for start in range(0, n_traces, 5000):
        out, tt = [], []
        for _ in range(min(5000, n_traces - start)):
            i = "tr-" + uuid.uuid4().hex
            r = list(row)
            r[cols.index("request_id")] = i
            aged(r, cols, ["timestamp_ms"])
            out.append(r)
            tt += [(k, v, i) for k, v in ttags]
        insert("trace_info", cols, out)
        insert("trace_tags", ["key", "value", "request_id"], tt)
    added["traces"] = n_traces
conn.commit()
print(added)
