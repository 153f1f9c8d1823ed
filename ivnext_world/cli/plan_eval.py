"""``ivnext-plan-eval``: success rate of latent planners and baselines in simulation (``configs/plan_eval.yaml``).

    ivnext-plan-eval world_model=outputs/world_model task=reach episodes=20 methods=[cem,mppi,random,expert]
    ivnext-plan-eval world_model=outputs/wm_pusht env.id=gym_pusht/PushT-v0 image_size=96 methods=[cem,random]
    ivnext-plan-eval world_model=runs/wm_vjepa2 encoder=vjepa2:/new/place/vjepa2-vitl   # backbone files moved

Writes ``<out>/results.json``, ``results.md``, ``success_vs_budget.png`` (with ``sweep.values``) and
episode videos.
"""
from __future__ import annotations

import logging

from ._hydra import hydra_app

log = logging.getLogger("ivnext.plan_eval")


@hydra_app("plan_eval")
def main(cfg) -> None:
    from ..planning.evaluate import run_plan_eval

    results = run_plan_eval(cfg)
    for name, m in results["methods"].items():
        log.info("%s: success %.0f%% (%d/%d)", name, 100 * m["success_rate"], m["successes"], m["episodes"])
    log.info("report: %s/results.md", cfg.out)


if __name__ == "__main__":
    main()
