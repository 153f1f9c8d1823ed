"""``ivnext-world-model``: action-conditioned fine-tuning of the latent world model (``configs/world_model.yaml``).

Examples::

    ivnext-world-model encoder=runs/s1 data.source=outputs/data/push out=runs/wm
    ivnext-world-model encoder=runs/s1 action_conditioned=false out=runs/wm_free
    ivnext-world-model encoder=runs/s1 loss=l2 rollout_steps=4 data.window=8
    ivnext-world-model encoder=official:/w/internvideo_next_base_p14_res224_f16.pth out=runs/wm_ivnext
    ivnext-world-model encoder=vjepa2:/w/vjepa2-vitl-fpc64-256 pool=2 out=runs/wm_vjepa2
    ivnext-world-model encoder=hf:/w/dinov2-small encoder_img_size=224 out=runs/wm_dinov2

``encoder`` is any backbone spec (:mod:`ivnext_world.backbones`); only our Stage-1 runs can decode.

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
