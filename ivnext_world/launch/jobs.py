"""The table of launchable jobs: a config name (``configs/<name>.yaml``, typed by ``config._SCHEMAS``)
and the function that takes the typed config. Adding a job is one line in :data:`JOBS`.

``distributed`` says whether the function is safe to run on several ranks at once (it trains
through :class:`~ivnext_world.train.Trainer`, which shards data and saves on rank 0 only); the
launcher refuses multi-task launches of the others, e.g. collection, which would write every
episode once per rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable


@dataclass(frozen=True)
class JobSpec:
    config: str  # name in ivnext_world.config._SCHEMAS and configs/<config>.yaml
    fn: str  # "module:function" taking the typed config; imported in the job process
    distributed: bool = False

    def function(self) -> Callable[[Any], Any]:
        module, name = self.fn.split(":")
        return getattr(import_module(module), name)


JOBS: dict[str, JobSpec] = {
    "collect": JobSpec("collect", "ivnext_world.sim.collection:collect"),
    "pretrain": JobSpec("pretrain", "ivnext_world.pretrain.run:run_pretrain", distributed=True),
    "world_model": JobSpec("world_model", "ivnext_world.world_model.train:train_world_model", distributed=True),
    "depth": JobSpec("depth", "ivnext_world.probes.depth.train:train_depth_probe"),
    "bc": JobSpec("bc", "ivnext_world.policies.bc:train_bc"),
    "plan_eval": JobSpec("plan_eval", "ivnext_world.planning.evaluate:run_plan_eval"),
    "classify": JobSpec("classify", "ivnext_world.probes.classify.run:run_classify"),
}


def job_spec(name: str) -> JobSpec:
    if name not in JOBS:
        raise KeyError(f"no job named {name!r}; known: {sorted(JOBS)}")
    return JOBS[name]
