"""``ivnext-demo``: the README's main job (see :mod:`ivnext_world.pipeline`)."""
from __future__ import annotations

from ._hydra import hydra_app


@hydra_app("demo")
def main(cfg) -> None:
    from ..pipeline import run_demo

    run_demo(cfg)


if __name__ == "__main__":
    main()
