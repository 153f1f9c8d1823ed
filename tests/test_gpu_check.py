"""scripts/gpu_check.sh --cpu: the GPU check's code path at tiny size on the CPU (what CI can run)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_path_passes_every_check(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "FAIL" not in proc.stdout, proc.stdout[-4000:]
    for name in ("Trainer steps, checkpoint, resume", "compiled vs eager", "MFU", "world model on the device", "FSDP2 step"):
        assert f"PASS {name}" in proc.stdout or any(
            line.startswith("PASS") and name in line for line in proc.stdout.splitlines()), name
    assert "8 passed, 0 failed" in proc.stdout
