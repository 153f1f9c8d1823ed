"""Typed configs: bad keys and values fail before any work, naming the key."""
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from ivnext_world.config import CollectConfig, PolicyKind, Task, load_config


def _error_text(exc: BaseException) -> str:
    # hydra wraps OmegaConf errors; the key is named somewhere in the chain.
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_defaults_compose_to_schema():
    cfg = load_config("collect")
    assert cfg.env.task == Task.push
    assert cfg.policy.kind == PolicyKind.expert
    assert cfg.out == "outputs/data/push"  # interpolation of ${env.task}


def test_overrides_are_typed():
    cfg = load_config("collect", ["env.task=reach", "episodes=7", "policy.noise_std=0.25"])
    assert (cfg.env.task, cfg.episodes, cfg.policy.noise_std) == (Task.reach, 7, 0.25)


@pytest.mark.parametrize(
    "override, key",
    [
        ("+env.colour=red", "colour"),  # unknown key, even with '+'
        ("episodes=many", "episodes"),  # wrong type
        ("env.task=fly", "task"),  # not one of the tasks
        ("policy.kind=telepathy", "kind"),
    ],
)
def test_bad_override_names_the_key(override, key):
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)) as info:
        load_config("collect", [override])
    assert key in _error_text(info.value)


def test_unknown_key_without_plus_is_rejected():
    with pytest.raises(ConfigCompositionException) as info:
        load_config("collect", ["env.colour=red"])
    assert "colour" in _error_text(info.value)


def test_cli_rejects_unknown_key_before_doing_work(tmp_path):
    out = tmp_path / "never_created"
    proc = subprocess.run(
        [sys.executable, "-m", "ivnext_world.cli.collect", f"out={out}", "episodez=3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "episodez" in proc.stderr
    assert not out.exists()


def test_schema_dataclass_defaults_are_documented_values():
    c = CollectConfig()
    assert c.workers >= 0 and c.episodes > 0 and c.env.image_size > 0


def test_free_form_dict_fields_take_new_keys_but_typed_fields_do_not():
    cfg = load_config("pretrain", ["+model.encoder_kwargs.embed_dim=48", "+model.encoder_kwargs.depth=2"])
    assert cfg.model.encoder_kwargs == {"embed_dim": 48, "depth": 2}
    with pytest.raises(Exception, match="embed_dimm"):
        load_config("pretrain", ["+model.embed_dimm=48"])


def test_every_public_name_at_the_package_root_resolves():
    import ivnext_world

    for name in ivnext_world.__all__:
        assert getattr(ivnext_world, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute"):
        ivnext_world.NotAThing  # noqa: B018
