#!/usr/bin/env bash
# A separate virtual environment with the real `lerobot` package, for the interop tests in
# tests/data/test_lerobot_interop.py (they run scripts in it through subprocess). LeRobot pins its own
# torch (<2.11), torchvision and torchcodec, which cannot share .venv with our torch 2.14.1.
# Safe to re-run: a stamp file makes the second run instant unless constraints-lerobot.txt or this
# script changed. Exit status is non-zero when the install fails, so a broken install is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEROBOT_VENV:-.venv-lerobot}
PY=${PYTHON:-python3}
stamp="$VENV/.lerobot-installed"
# One installer at a time (two pytest runs may call this at once); the lock file sits beside the venv,
# whose parent (e.g. ~/.cache/ivnext_world on a fresh machine) may not exist yet.
mkdir -p "$(dirname "${VENV%/}")"
exec 9>"${VENV%/}.lock"
flock 9
want="$(cat constraints-lerobot.txt scripts/setup_lerobot.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
source scripts/disk_check.sh
if [[ ! -d "$VENV/bin" ]]; then
  require_free_gb "$VENV" 10 "the LeRobot venv ($VENV, ~8 GB)"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup-lerobot] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
start=$(date +%s)
echo "[setup-lerobot] pip install lerobot into $VENV (first time: a few minutes, ~GBs of torch wheels)"
# PIP_CONSTRAINT is cleared: a machine-wide constraint file for .venv's torch must not steer this venv.
PIP_CONSTRAINT="" "$VENV/bin/python" -m pip install -q -c constraints-lerobot.txt lerobot \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$VENV/bin/python" -c "import lerobot, torch, torchcodec; from lerobot.datasets.lerobot_dataset import LeRobotDataset; print('[setup-lerobot] lerobot', lerobot.__version__, 'torch', torch.__version__, 'torchcodec', torchcodec.__version__)"
echo "$want" > "$stamp"
echo "[setup-lerobot] done in $(( $(date +%s) - start )) s"
