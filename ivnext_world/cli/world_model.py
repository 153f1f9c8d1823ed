"""``ivnext-world-model``: action-conditioned fine-tuning of the latent world model (``configs/world_model.yaml``).

Examples::

    ivnext-world-model encoder=runs/s1 data.source=outputs/data/push out=runs/wm
    ivnext-world-model encoder=runs/s1 action_conditioned=false out=runs/wm_free
    ivnext-world-model encoder=runs/s1 loss=l2 rollout_steps=4 data.window=8

Then ``WorldModel.load("runs/wm")`` rebuilds encoder, predictor and normalisation in one call.
"""
from __future__ import annotations

import json
import logging

from ._hydra import hydra_app

log = logging.getLogger("ivnext.world_model")


@hydra_app("world_model")
def main(cfg) -> None:
    from ..world_model.train import train_world_model

    summary = train_world_model(cfg)
    log.info("world model done: %s", json.dumps({k: summary[k] for k in ("steps", "first_loss", "final_loss", "checkpoint")}))


if __name__ == "__main__":
    main()
