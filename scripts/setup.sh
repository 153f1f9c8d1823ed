#!/usr/bin/env bash
# One-shot set-up for a fresh Debian machine: system packages for headless rendering, a virtual
# environment in .venv, and the package with its test extras. Safe to re-run; a stamp file makes the
# second run instant unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.ivnext-installed"
want="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

# Debian packages: EGL/OSMesa for MuJoCo offscreen rendering, Vulkan (lavapipe) for open3d's
# offscreen renderer, ffmpeg (mp4 tools, and the shared libraries torchcodec decodes with), and a
# one-node SLURM (slurmctld, slurmd, client tools, munge) for tests/slurm (~15 s; nothing is
# configured or started here: the tests do that).
# Only installed when missing, only as root.
apt_pkgs=(libegl1 libgl1 libgl1-mesa-dri libegl-mesa0 libosmesa6 mesa-vulkan-drivers libgomp1 ffmpeg)
apt_pkgs+=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "[setup] apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "[setup] WARNING: missing Debian packages (${missing[*]}); run as root or install them yourself" >&2
  fi
fi

# A fresh .venv takes ~8 GB (torch 2.14.1 is a CUDA build: ~3 GB of nvidia libraries), plus pip's
# unpacked wheels while it installs.
source scripts/disk_check.sh
if [[ ! -d "$VENV/lib/python3.11/site-packages/torch" ]]; then
  require_free_gb "$VENV" 10 "a fresh $VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
echo "[setup] pip install (torch is served from local disk on these machines; ~2-4 min the first time)"
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev,torchcodec,pusht]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
echo "$want" > "$stamp"
echo "[setup] done"
