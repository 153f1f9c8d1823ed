"""``ivnext-pretrain``: one InternVideo-Next pretraining stage (see ``configs/pretrain.yaml``).

Examples::

    ivnext-pretrain stage=1 data.source=outputs/data/push out=runs/s1
    ivnext-pretrain stage=2 init_from=runs/s1 loop.base_lr=1e-4 out=runs/s2
    ivnext-pretrain stage=1 loss.w_middle=0 loss.w_final=0       # reconstruction only (ablation)
    ivnext-pretrain stage=1 model.decoder=linear                 # linear pixel decoder (ablation)
    torchrun --nproc-per-node 8 -m ivnext_world.cli.pretrain stage=1 ...   # one node, 8 GPUs (DDP)

Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the processes join one process
group (nccl on GPUs, gloo on CPUs) and each uses ``cuda:LOCAL_RANK``; ``torchrun`` also starts the
``ivnext-pretrain`` script itself (``torchrun --nproc-per-node 8 $(which ivnext-pretrain) ...``).
SLURM jobs go through ``ivnext-launch`` instead.
"""
from __future__ import annotations

import json
import logging

from ._hydra import hydra_app

log = logging.getLogger("ivnext.pretrain")


@hydra_app("pretrain")
def main(cfg) -> None:
    from ..launch.distributed import init_distributed, shutdown_distributed
    from ..pretrain.run import run_pretrain

    dist_info = init_distributed()  # torchrun's environment -> one process group; nothing for one process
    summary = run_pretrain(cfg)
    if dist_info.backend:
        shutdown_distributed()
    log.info("stage %d done: %s", cfg.stage, json.dumps({k: summary[k] for k in ("steps", "world_size", "first_loss", "final_loss", "checkpoint")}))


if __name__ == "__main__":
    main()
