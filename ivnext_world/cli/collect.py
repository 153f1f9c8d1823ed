"""``ivnext-collect``: record policy episodes of a simulated env as a LeRobot v2.1 dataset.

Examples::

    ivnext-collect env.task=push episodes=100 policy.kind=expert policy.noise_std=0.1 workers=2
    ivnext-collect env.task=reacher policy.kind=random episodes=20 out=outputs/data/reacher_random
    ivnext-collect env.id=gym_pusht/PushT-v0 env.image_size=96 policy.kind=random_walk episodes=50
    ivnext-collect env.id=InvertedPendulum-v5 env.kwargs={reset_noise_scale:0.05} policy.kind=random
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..config import CollectConfig
from ..sim import collect
from ..sim.collection import _first_missing
from ._hydra import hydra_app

log = logging.getLogger("ivnext.collect")


class RemoveFailedOutput(Callback):
    """hydra creates the run folder (``out``, holding ``.hydra/`` and ``collect.log``) before
    ``collect()`` can refuse an env or a policy. When the job fails and the folder did not exist
    before this command and holds no complete episode, remove it (and the parents this command
    created), so that a refused run leaves nothing behind. A folder that existed is never touched."""

    created: Path | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.created = _first_missing(Path(str(config.hydra.run.dir)))

    def on_job_end(self, config: DictConfig, job_return, **kwargs: Any) -> None:
        out = Path(str(config.hydra.run.dir))
        if job_return.status != JobStatus.FAILED or self.created is None:
            return
        if any((out / "meta" / "_complete").glob("episode_*.json")):
            return  # complete episodes stay for a re-run to resume
        logging.shutdown()  # close collect.log before its folder goes
        shutil.rmtree(self.created, ignore_errors=True)


@hydra_app("collect")
def main(cfg: CollectConfig) -> None:
    summary = collect(cfg)
    rate = "n/a" if summary.success_rate is None else f"{summary.success_rate:.1%}"
    log.info(
        "wrote %d episodes (%d frames), skipped %d complete ones; success %s -> %s",
        summary.written, summary.frames, summary.skipped, rate, summary.out,
    )


if __name__ == "__main__":
    main()
