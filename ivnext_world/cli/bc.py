"""``ivnext-bc``: behaviour cloning on frozen latents or pixels (``configs/bc.yaml``).

    ivnext-bc data=outputs/data/reach_demos features=latent encoder=outputs/world_model out=outputs/bc_latent
"""
from __future__ import annotations

import json
import logging

from ._hydra import hydra_app

log = logging.getLogger("ivnext.bc")


@hydra_app("bc")
def main(cfg) -> None:
    from ..policies import train_bc

    log.info("bc done: %s", json.dumps(train_bc(cfg)))


if __name__ == "__main__":
    main()
