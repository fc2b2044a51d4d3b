#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries (initdb, postgres) when missing, for the tests that run DynamoDB
# tables and the SQL kernel on a real PostgreSQL (tests/postgres.py starts one in a temporary data dir as a
# non-root user). Nothing is started here and no cluster is created.
set -euo pipefail
if command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
else
  echo "install PostgreSQL's server (Debian: apt-get install postgresql) first" >&2; exit 1
fi
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
