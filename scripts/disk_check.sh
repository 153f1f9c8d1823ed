# Sourced by the set-up scripts: fail at once, with the numbers, when the disk cannot hold an install,
# instead of pip stopping half-way with "[Errno 28] No space left on device".
# require_free_gb DIR GB WHAT   (IVNEXT_SKIP_DISK_CHECK=1 skips the check)
require_free_gb() {
  local dir=$1 need_gb=$2 what=$3
  [[ "${IVNEXT_SKIP_DISK_CHECK:-0}" == 1 ]] && return 0
  while [[ ! -d "$dir" ]]; do dir=$(dirname "$dir"); done
  local free_kb
  free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
  if (( free_kb < need_gb * 1024 * 1024 )); then
    echo "[setup] ERROR: $what needs about ${need_gb} GB free on the disk holding $dir;" \
         "$(( free_kb / 1024 )) MB are free. Free some space (or set IVNEXT_SKIP_DISK_CHECK=1 to try anyway)." >&2
    exit 1
  fi
}
