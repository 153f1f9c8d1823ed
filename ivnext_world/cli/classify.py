"""``ivnext-classify``: frozen-backbone video classification with attentive probes (``configs/classify.yaml``).

Examples::

    ivnext-make-temporal-bench out=outputs/temporal_bench          # the simulator's temporal benchmark
    ivnext-classify backbone=random out=runs/cls_random
    ivnext-classify backbone=runs/stage2 out=runs/cls_stage2
    ivnext-classify backbone=timm:vit_tiny_patch16_224 out=runs/cls_frames          # per-frame image model
    ivnext-classify backbone=frame:timm:vit_tiny_patch16_224 out=runs/cls_single    # single-frame baseline
    ivnext-classify classify_preset=vjepa2_ssv2 data.train=ssv2/train.csv data.test=ssv2/val.csv data.val=null \\
        data.classes=ssv2/classes.txt backbone=timm:ivnext_vit_large_patch14_224.official_s2:/weights/large.pth

Writes ``<out>/results.json`` (every head; per head kind the head picked on validation, with top-1,
top-5, per-class accuracy and the confusion matrix on test), ``summary.json``, ``confusion_*.png``,
``tensorboard/`` and ``checkpoints/``; rerunning the command resumes.
"""
from __future__ import annotations

import json
import logging
import sys

from ._hydra import hydra_app

log = logging.getLogger("ivnext.classify")


@hydra_app("classify")
def _main(cfg) -> None:
    from ..probes.classify import BackboneInputError, LabelError, run_classify

    try:
        summary = run_classify(cfg)
    except (LabelError, BackboneInputError, FileNotFoundError) as err:
        # bad input (labels, class list, backbone size, paths): one clear line, no traceback
        print(f"ivnext-classify: error: {err}", file=sys.stderr)
        sys.exit(2)
    keys = [k for k in summary if k.endswith("_top1")]
    log.info("test top-1 (chance %.3f): %s", summary["chance"], json.dumps({k: round(summary[k], 4) for k in keys}))
    log.info("results: %s, confusion matrix: %s", summary["results"], summary["confusion_png"])


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
