-- Run once as a superuser (or the owner of MLflow's tables) in MLflow's database, after MLflow
-- created its tables (`mlflow server` / `mlflow db upgrade` does) and before the connector starts.
-- Needs wal_level = logical in postgresql.conf (a restart), and a replication slot to spare.

-- The connector's role: it reads the WAL and the five tables, nothing else.
CREATE ROLE mlflow_cdc WITH LOGIN REPLICATION PASSWORD 'change-me';
GRANT CONNECT ON DATABASE mlflow TO mlflow_cdc;
GRANT USAGE ON SCHEMA public TO mlflow_cdc;
GRANT SELECT ON public.runs, public.model_versions, public.registered_model_aliases, public.trace_info, public.registered_models TO mlflow_cdc;

-- Updates and deletes must carry the whole old row: the stage a version left (a promotion's
-- from_stage) and the version an alias pointed at when it was deleted are only in "before".
ALTER TABLE public.runs REPLICA IDENTITY FULL;
ALTER TABLE public.model_versions REPLICA IDENTITY FULL;
ALTER TABLE public.registered_model_aliases REPLICA IDENTITY FULL;
ALTER TABLE public.trace_info REPLICA IDENTITY FULL;
-- registered_models: only renames are read (from the key-change headers); no before image needed.

-- The publication, created here by the tables' owner: the connector's role does not own the
-- tables, so it cannot create one itself (the connector files set
-- publication.autocreate.mode=disabled and name this publication).
CREATE PUBLICATION mlflow_cdc FOR TABLE public.runs, public.model_versions,
  public.registered_model_aliases, public.trace_info, public.registered_models;
