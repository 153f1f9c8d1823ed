#!/usr/bin/env bash
# One-GPU check of the toolkit's GPU path (see scripts/gpu_check.py): PASS/FAIL lines and a table.
#   bash scripts/gpu_check.sh          # one CUDA GPU, Base 16x224 bf16, at most ~8 minutes
#   bash scripts/gpu_check.sh --cpu    # the same path at tiny size on the CPU (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" scripts/gpu_check.py "$@"
