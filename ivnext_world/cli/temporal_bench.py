"""``ivnext-make-temporal-bench``: render the Tabletop Motion-8 temporal benchmark (8 motion directions).

Examples::

    ivnext-make-temporal-bench out=outputs/temporal_bench
    ivnext-make-temporal-bench image_size=96 train_per_class=64 out=runs/motion8_96
    ivnext-classify data.train=outputs/temporal_bench/train.csv data.val=outputs/temporal_bench/val.csv \\
        data.test=outputs/temporal_bench/test.csv data.classes=outputs/temporal_bench/classes.txt

See :mod:`ivnext_world.sim.temporal_bench` for the design (why one frame cannot tell the class).
"""
from __future__ import annotations

import logging

from ..sim.temporal_bench import TemporalBenchConfig, make_temporal_bench
from ._hydra import hydra_app

log = logging.getLogger("ivnext.temporal_bench")


@hydra_app("temporal_bench")
def main(cfg: TemporalBenchConfig) -> None:
    meta = make_temporal_bench(cfg)
    leak = meta["leak_check"]
    log.info("%s: %s clips (train/val/test) in %s", meta["name"], {k: len(v) for k, v in meta["splits"].items()}, cfg.out)
    log.info("leak check (k-NN on ground truth, test accuracy; chance %.3f): centre frame %.3f, first frame %.3f, "
             "true motion (oracle) %.3f", leak["chance"], leak["centre_frame"], leak["first_frame"], leak["true_motion"])


if __name__ == "__main__":
    main()
