#!/usr/bin/env bash
# Launch entry point: the repository's venv Python running ivnext_world.launch, from any directory.
#   slurm/launch.sh pretrain launcher=h100_4x8 stage=1 data.source=... out=...  [--dry-run]
#   slurm/launch.sh gather <sweep folder>
# IVNEXT_PYTHON=/path/to/python picks another interpreter (default: the repository's .venv).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${IVNEXT_PYTHON:-$repo/.venv/bin/python}" -m ivnext_world.launch "$@"
