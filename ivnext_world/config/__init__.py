"""Configuration: typed schema, hydra registration and programmatic loading."""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from .schema import AdapterSpec, CollectConfig, EnvConfig, GymEnvConfig, PolicyConfig, PolicyKind, Task, env_name

# `${ivnext.env_name:${env.task},${env.id}}` in default output folders (registered once per process).
if not OmegaConf.has_resolver("ivnext.env_name"):
    OmegaConf.register_new_resolver("ivnext.env_name", env_name)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# Schema of each top-level config, imported on use so that e.g. collection never imports torch.
_SCHEMAS = {
    "collect": "ivnext_world.config.schema:CollectConfig",
    "demo": "ivnext_world.pipeline:DemoConfig",
    "pretrain": "ivnext_world.pretrain.run:PretrainConfig",
    "world_model": "ivnext_world.world_model.train:WorldModelTrainConfig",
    "depth": "ivnext_world.probes.depth.train:DepthProbeConfig",
    "plan_eval": "ivnext_world.planning.evaluate:PlanEvalConfig",
    "bc": "ivnext_world.policies.bc:BCConfig",
    "temporal_bench": "ivnext_world.sim.temporal_bench:TemporalBenchConfig",
    "classify": "ivnext_world.probes.classify.config:ClassifyConfig",
}


def schema_of(name: str) -> type:
    if name not in _SCHEMAS:
        raise KeyError(f"no config schema named {name!r}; known: {sorted(_SCHEMAS)}")
    module, cls = _SCHEMAS[name].split(":")
    return getattr(import_module(module), cls)


def register_configs(*names: str) -> None:
    """Register schema dataclasses as ``<name>_schema`` for the ``defaults`` lists of the YAML files."""
    cs = ConfigStore.instance()
    for name in names or tuple(_SCHEMAS):
        node = OmegaConf.structured(schema_of(name))
        # Free-form dicts (gymnasium kwargs, encoder kwargs) take `key={a: 1}` overrides on the command
        # line too: hydra composes in struct mode, which would otherwise ask for `+key=...`.
        _open_free_dicts(node)
        cs.store(name=f"{name}_schema", node=node)


def load_config(name: str, overrides: Sequence[str] = ()):
    """Compose ``configs/<name>.yaml`` with hydra-style ``key=value`` overrides, outside a hydra app.

    Raises hydra/OmegaConf errors naming the offending key for unknown keys or wrong types.
    """
    from hydra import compose, initialize_config_dir

    register_configs(name)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=list(overrides))
    return validate(cfg, name)


def validate(cfg: DictConfig, name: str) -> DictConfig:
    """Re-merge a composed config onto its schema in struct mode.

    hydra lets ``+key=value`` add keys even to structured configs; merging onto the schema rejects
    them (and any type error) with the full key named. Hydra's own ``hydra`` node is not ours.
    """
    schema = OmegaConf.structured(schema_of(name))
    OmegaConf.set_struct(schema, True)
    _open_free_dicts(schema)
    # A plain container drops the composed nodes' schema types, which would let the added keys pass.
    user = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    user.pop("hydra", None)
    return OmegaConf.merge(schema, user)


def _open_free_dicts(node: DictConfig) -> None:
    """``Dict[str, Any]`` fields (e.g. ``model.encoder_kwargs``) take any key: lift struct mode there only."""
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if OmegaConf.get_type(child) is dict:
                OmegaConf.set_struct(child, False)
            else:
                _open_free_dicts(child)


__all__ = [
    "AdapterSpec",
    "CONFIG_DIR",
    "GymEnvConfig",
    "CollectConfig",
    "EnvConfig",
    "PolicyConfig",
    "PolicyKind",
    "Task",
    "load_config",
    "register_configs",
    "validate",
]
