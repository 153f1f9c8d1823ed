"""Shared hydra entry-point plumbing: typed configs from ``configs/`` and clean error exits."""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import hydra
from omegaconf import DictConfig, OmegaConf

from ..config import CONFIG_DIR, register_configs, validate

T = TypeVar("T")


def hydra_app(config_name: str) -> Callable[[Callable[[T], object]], Callable[[], None]]:
    """Wrap ``fn(cfg_object)`` as a hydra CLI reading ``configs/<config_name>.yaml``.

    The composed config is converted to its schema dataclass (``OmegaConf.to_object``), so ``fn``
    receives typed values with enums and interpolations resolved; unknown keys and wrong types have
    already been rejected by hydra with the key named.
    """

    def wrap(fn: Callable[[T], object]) -> Callable[[], None]:
        @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
        def _main(cfg: DictConfig) -> None:
            fn(OmegaConf.to_object(validate(cfg, config_name)))

        @functools.wraps(fn)
        def entry() -> None:
            register_configs(config_name)
            _main()

        return entry

    return wrap
