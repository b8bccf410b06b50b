#!/usr/bin/env bash
# Creates the stack's databases. The official postgres image runs this once, on the first start
# with an empty data volume (it is mounted into /docker-entrypoint-initdb.d).
#
# One login role per server, each owning its own databases, so neither server can read the
# other's tables: mlflow owns `mlflow` (runs, models) and `mlflow_auth` (basic-auth users, used
# by the `auth` profile), prefect owns `prefect`. The passwords are read from the environment by
# psql itself (\getenv) and quoted by it (:'name'), so any character works and none appears on a
# command line.
set -euo pipefail
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"
: "${PREFECT_DB_PASSWORD:?PREFECT_DB_PASSWORD is not set}"

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres <<'SQL'
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv prefect_password PREFECT_DB_PASSWORD
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE prefect OWNER prefect;
REVOKE ALL ON DATABASE mlflow, mlflow_auth, prefect FROM PUBLIC;
-- Prefect's migrations create pg_trgm too (it is a trusted extension, so the owner may);
-- creating it here keeps that step from depending on the role's rights.
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
