"""A real one-node SLURM cluster for the tests (SPEC section 7): munged + slurmctld + slurmd.

Nothing is installed here (``scripts/setup.sh`` installs the Debian packages); this only writes
``/etc/slurm/slurm.conf`` (the previous one is restored afterwards), starts the three daemons in
the foreground as children of the test process, waits until ``sinfo`` shows the node idle, and
stops exactly those processes at the end. State, spool and logs live in a temporary folder, so
every session starts with an empty queue.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol", "squeue")
MARKER = "# written by ivnext_world tests/slurm/_cluster.py"


def why_unavailable() -> str | None:
    """The reason a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "SLURM tests need root to start munged/slurmctld/slurmd (run as root, e.g. in CI)"
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"SLURM binaries missing ({', '.join(missing)}): run scripts/setup.sh as root to install slurmctld slurmd slurm-client munge"
    return None


def slurm_conf(host: str, cpus: int, state: Path) -> str:
    return f"""{MARKER}
ClusterName=ivnext
SlurmctldHost={host}
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
# Requeue/cancel: SIGTERM, then SIGKILL after KillWait s. Our jobs finish the step they are in, checkpoint
# it and exit on SIGTERM, so this is only an upper bound; it must exceed a step plus a checkpoint on a
# loaded machine (tiny Stage-1 steps took up to 5 s on 2 shared cores; 2 s killed them mid-step).
KillWait=20
# Default memory per CPU so that jobs that give no --mem do not claim the whole node.
DefMemPerCPU=1000
NodeName={host} CPUs={cpus} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class OneNodeCluster:
    def __init__(self, state_dir: Path):
        self.state = Path(state_dir)
        self.host = socket.gethostname()
        self.cpus = os.cpu_count() or 1
        self.procs: list[subprocess.Popen] = []
        self._saved_conf: str | None = None

    def start(self, timeout: float = 60.0) -> "OneNodeCluster":
        for d in ("ctld", "d", "munge"):
            (self.state / d).mkdir(parents=True, exist_ok=True)
        self._munge()
        if CONF.exists():
            self._saved_conf = CONF.read_text()
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(slurm_conf(self.host, self.cpus, self.state))
        self._spawn(["slurmctld", "-D", "-i"], "slurmctld.out")
        self._spawn(["slurmd", "-D"], "slurmd.out")
        self.wait_idle(timeout)
        return self

    def _munge(self) -> None:
        if not MUNGE_KEY.exists():
            subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o400)
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return  # a munged is already serving this machine
        run_dir = Path("/run/munge")
        run_dir.mkdir(exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        self._spawn(["runuser", "-u", "munge", "--", "munged", "-F"], "munged.out")
        self._wait(lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0, 20, "munged")

    def _spawn(self, cmd: list[str], log: str) -> None:
        out = open(self.state / log, "wb")
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    def _wait(self, ok, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ok():
                return
            dead = [p.args for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited while waiting for {what}; logs in {self.state}")
            time.sleep(0.3)
        raise TimeoutError(f"{what} not ready after {timeout:.0f} s; logs in {self.state}")

    def node_state(self) -> str:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    def wait_idle(self, timeout: float) -> None:
        self._wait(lambda: self.node_state() == "idle", timeout, "sinfo to show the node idle")

    def stop(self) -> None:
        subprocess.run(["scancel", "--user=root"], capture_output=True)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        if self._saved_conf is not None:
            CONF.write_text(self._saved_conf)
        elif CONF.exists() and CONF.read_text().startswith(MARKER):
            CONF.unlink()


if __name__ == "__main__":  # manual check: python tests/slurm/_cluster.py
    import tempfile

    c = OneNodeCluster(Path(tempfile.mkdtemp(prefix="ivnext-slurm-"))).start()
    print("node idle:", c.node_state(), "state in", c.state)
    print(subprocess.run(["sbatch", "--wrap", "hostname", "-o", str(c.state / "hello.out")], capture_output=True, text=True).stdout)
    time.sleep(3)
    print((c.state / "hello.out").read_text() if (c.state / "hello.out").exists() else "no output yet")
    c.stop()
