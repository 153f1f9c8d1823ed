"""One launcher for every long job: in process, submitit's local executor, or SLURM.

    python -m ivnext_world.launch pretrain launcher=h100_4x8 stage=1 out=runs/s1    # CLI
    launch("pretrain", ["stage=1", "out=runs/s1"], ["launcher=slurm"])             # Python

Files: ``config`` (launcher group schema and checks), ``jobs`` (the job table), ``distributed``
(job environment -> torch.distributed), ``job`` (the requeueable submitit callable),
``provenance`` (what a job folder records), ``launcher`` (submission, arrays), ``gather``, ``memory``
(a GPU job's per-GPU memory, measured on fake tensors before submission) and ``fake_gpu`` (what makes
fake CPU tensors behave as on a CUDA GPU for that measurement).
"""
from .config import LauncherConfig, LauncherConfigError, check, compose_launcher, parse_time_limit
from .distributed import DistInfo, init_distributed
from .gather import gather
from .job import TrainingJob
from .jobs import JOBS, JobSpec, job_spec
from .launcher import Launched, launch, launch_array, submit

__all__ = [
    "JOBS", "DistInfo", "JobSpec", "Launched", "LauncherConfig", "LauncherConfigError", "TrainingJob", "check",
    "compose_launcher", "gather", "init_distributed", "job_spec", "launch", "launch_array", "parse_time_limit", "submit",
]
