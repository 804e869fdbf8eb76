#!/usr/bin/env bash
# Create .venv with torch, torchvision and dlhpc (editable). Safe to run again: it only adds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch and torchvision pinned to the builds these machines carry (a CPU-capable build).
.venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1 \
  || .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test,tracking,search]"
echo "installed: $(.venv/bin/dlhpc --version) in $(pwd)/.venv"
