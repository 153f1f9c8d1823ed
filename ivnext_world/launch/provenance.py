"""What a job folder records about how it was run, so a result can be traced and reproduced.

``<out>/launch/``::

    config.yaml     the job's resolved, typed config (rebuild with load_config + these values)
    launcher.yaml   the launcher config (nodes, GPUs, partition, time limit, ...)
    command.txt     the command line that submitted it
    git.json        commit and branch of the source tree (read from .git, no git process)
    packages.txt    every installed distribution, ``name==version``, in the job's own environment
    env.json        python, torch, CUDA, hostname(s), world size
    attempts.jsonl  one line per start: job id, SLURM restart count, time, resumed-from checkpoint
"""
from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .config import REPO


def git_info(repo: Path = REPO) -> dict[str, Any]:
    """Commit of ``repo`` from ``.git/HEAD`` and the refs; ``{}`` when it is not a git checkout."""
    git = repo / ".git"
    if git.is_file():  # a worktree: "gitdir: <path>"
        git = Path(git.read_text().split(":", 1)[1].strip())
    head = git / "HEAD"
    if not head.is_file():
        return {}
    ref = head.read_text().strip()
    if not ref.startswith("ref: "):
        return {"commit": ref, "branch": None}
    name = ref[5:]
    common = git / "commondir"  # a worktree keeps its refs in the main repository's .git
    bases = [git] + ([(git / common.read_text().strip()).resolve()] if common.is_file() else [])
    for base in bases:
        if (base / name).is_file():
            return {"commit": (base / name).read_text().strip(), "branch": name.removeprefix("refs/heads/")}
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + name):
                    return {"commit": line.split()[0], "branch": name.removeprefix("refs/heads/")}
    return {"commit": None, "branch": name.removeprefix("refs/heads/")}


def package_versions() -> list[str]:
    seen = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]}
    return sorted(seen, key=str.lower)


def to_yaml(obj: Any) -> str:
    node = OmegaConf.structured(obj) if is_dataclass(obj) else OmegaConf.create(obj)
    return OmegaConf.to_yaml(node)


def write_submission(out: Path, cfg: Any, launcher: Any, argv: list[str] | None = None) -> Path:
    """At submission (on the submitting machine): configs, command line and git commit."""
    d = Path(out) / "launch"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(to_yaml(cfg))
    (d / "launcher.yaml").write_text(to_yaml(launcher))
    (d / "command.txt").write_text(" ".join(argv if argv is not None else sys.argv) + "\n")
    (d / "git.json").write_text(json.dumps(git_info(), indent=1))
    return d


def write_start(out: Path, dist_info: Any, job_id: str | None) -> None:
    """At every start of the job, rank 0, on the compute node: its environment and one attempt line."""
    import torch

    d = Path(out) / "launch"
    d.mkdir(parents=True, exist_ok=True)
    (d / "packages.txt").write_text("\n".join(package_versions()) + "\n")
    env = {
        "python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(), "hostname": socket.gethostname(),
        "nodelist": os.environ.get("SLURM_JOB_NODELIST"), **asdict(dist_info),
    }
    (d / "env.json").write_text(json.dumps(env, indent=1))
    from ..train import latest_checkpoint

    ckpt = latest_checkpoint(Path(out) / "checkpoints")
    attempt = {
        "job_id": job_id, "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hostname": socket.gethostname(),
        "world_size": dist_info.world_size, "resume_from": str(ckpt) if ckpt else None,
    }
    with open(d / "attempts.jsonl", "a") as f:
        f.write(json.dumps(attempt) + "\n")
