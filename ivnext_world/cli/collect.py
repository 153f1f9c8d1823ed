"""``ivnext-collect``: record policy episodes of a simulated task as a LeRobot v2.1 dataset.

Examples::

    ivnext-collect env.task=push episodes=100 policy.kind=expert policy.noise_std=0.1 workers=2
    ivnext-collect env.task=reacher policy.kind=random episodes=20 out=outputs/data/reacher_random
"""
from __future__ import annotations

import logging

from ..config import CollectConfig
from ..sim import collect
from ._hydra import hydra_app

log = logging.getLogger("ivnext.collect")


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
