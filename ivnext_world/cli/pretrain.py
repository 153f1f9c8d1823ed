"""``ivnext-pretrain``: one InternVideo-Next pretraining stage (see ``configs/pretrain.yaml``).

Examples::

    ivnext-pretrain stage=1 data.source=outputs/data/push out=runs/s1
    ivnext-pretrain stage=2 init_from=runs/s1 loop.base_lr=1e-4 out=runs/s2
    ivnext-pretrain stage=1 loss.w_middle=0 loss.w_final=0       # reconstruction only (ablation)
    ivnext-pretrain stage=1 model.decoder=linear                 # linear pixel decoder (ablation)
"""
from __future__ import annotations

import json
import logging

from ._hydra import hydra_app

log = logging.getLogger("ivnext.pretrain")


@hydra_app("pretrain")
def main(cfg) -> None:
    from ..pretrain.run import run_pretrain

    summary = run_pretrain(cfg)
    log.info("stage %d done: %s", cfg.stage, json.dumps({k: summary[k] for k in ("steps", "first_loss", "final_loss", "checkpoint")}))


if __name__ == "__main__":
    main()
