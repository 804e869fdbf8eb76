#!/usr/bin/env bash
# Install everything the tests need and run them: .venv, the SLURM and OpenPBS test clusters (as root), pytest.
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --unit     tests/unit alone: no cluster, nothing trained, about two minutes (a fast loop)
# Further arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--unit" ]; then
  shift
  scripts/install.sh
  export DLHPC_DATA=${DLHPC_DATA:-$(cd .. && pwd)/shared/data/mnist}
  exec .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit "$@"
fi
scripts/install.sh
if [ "$(id -u)" = 0 ]; then
  # a real browser for the report test (Debian's chromium, headless)
  command -v chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }
  # ShellCheck for the fuzz test: every script rendered from an accepted spec must pass it
  command -v shellcheck >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q shellcheck >/dev/null; }
  scripts/testcluster.sh up
  # the clusters are up: from here a live test whose cluster is down fails instead of skipping
  export DLHPC_CLUSTERS_UP=1
else
  echo "not root: the live SLURM/PBS tests will be skipped" >&2
fi
# Lint first: a lint error fails the run before the slow tests.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
export DLHPC_DATA=${DLHPC_DATA:-$(cd .. && pwd)/shared/data/mnist}
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
