"""configs/world_model.yaml composes onto WorldModelTrainConfig, and bad values are refused early."""
import pytest
from omegaconf import OmegaConf

from ivnext_world import config as config_mod
from ivnext_world.world_model import WorldModelTrainConfig


def test_yaml_composes_to_the_schema():
    cfg = OmegaConf.to_object(config_mod.load_config("world_model", ["loss=cosine", "data.episodes=[0,1]", "out=/tmp/x"]))
    assert isinstance(cfg, WorldModelTrainConfig)
    assert (cfg.loss, cfg.data.episodes, cfg.rollout_steps, cfg.loop.steps) == ("cosine", [0, 1], 2, 2000)


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(Exception, match="rolout_steps"):
        config_mod.load_config("world_model", ["+rolout_steps=3"])
    with pytest.raises(ValueError, match="loss"):
        OmegaConf.to_object(config_mod.load_config("world_model", ["loss=huber"]))
