"""The set-up scripts' disk check: a machine without room for the install stops at once with the
numbers, before pip fills the disk half-way ("[Errno 28] No space left on device")."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _check(dir_: Path, gb: int, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    cmd = f'source scripts/disk_check.sh; require_free_gb "{dir_}" {gb} "a test install"; echo passed'
    env = {"PATH": "/usr/bin:/bin", **(env_extra or {})}
    return subprocess.run(["bash", "-c", cmd], cwd=REPO, capture_output=True, text=True, env=env)


def test_more_than_the_disk_holds_fails_with_the_free_space_named(tmp_path):
    r = _check(tmp_path / "not" / "yet" / "made", 10**7)  # 10 PB: no disk here has that
    assert r.returncode == 1 and "passed" not in r.stdout
    assert "a test install needs about 10000000 GB free" in r.stderr and "MB are free" in r.stderr


def test_a_small_need_passes_and_the_override_skips_the_check(tmp_path):
    assert _check(tmp_path, 0).stdout.strip() == "passed"
    assert _check(tmp_path, 10**7, {"IVNEXT_SKIP_DISK_CHECK": "1"}).stdout.strip() == "passed"
