"""Official InternVideo-Next checkpoints: our loader against outputs of the official model code.

The fixture (tests/fixtures/official/, written by tests/fixtures/make_official_fixture.py from the
official repository at commit 3965eef) is a reduced-size official model with random weights: its
state dict under the official key names, an input clip, and the official outputs.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ivnext_world.models import VideoViT
from ivnext_world.models.official import (
    TRAINING_ONLY, CheckpointError, convert_official_keys, load_official_encoder, read_state_dict,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official"
WEIGHTS = FIXTURE / "official_tiny.safetensors"
# The fixture model's size (make_official_fixture.MODEL_ARGS) in our arguments.
TINY = dict(embed_dim=32, depth=2, num_heads=2, pool_num_heads=2, pool_dim=16, num_frames=4, img_size=56)
NAME = "ivnext_vit_tiny_patch14_224"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def io():
    return load_file(str(FIXTURE / "official_tiny_io.safetensors"))


@pytest.fixture(scope="module")
def official_sd():
    return load_file(str(WEIGHTS))


def _create(file, pool_query="mean", mlp_act="gelu_tanh", **kwargs):
    """Our encoder at the fixture's size, loaded through timm's pretrained path from ``file``."""
    overlay = dict(file=str(file), input_size=(3, 56, 56))  # the checkpoint's frames are 56 px
    args = {**TINY, "pool_query": pool_query, "mlp_act": mlp_act, **kwargs}
    return timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=overlay, **args).eval()


def _outputs(model, video):
    with torch.no_grad():
        tokens = model.forward_features(video)
        return tokens[:, model.num_prefix_tokens:], model.forward_head(tokens)


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mlp_act, variant", [("gelu", "exact"), ("gelu_tanh", "tanh")])
def test_loader_reproduces_the_official_outputs(io, mlp_act, variant):
    tokens, pooled = _outputs(_create(WEIGHTS, mlp_act=mlp_act), io["video"])
    _close(tokens, io[f"tokens_{variant}"])
    _close(pooled, io[f"pooled_{variant}"])
    # The activation matters at this tolerance: the other variant's outputs are far off.
    other = "tanh" if variant == "exact" else "exact"
    assert (tokens - io[f"tokens_{other}"]).abs().max() > 1e-4


def test_position_table_for_other_clip_lengths_and_sizes_matches_official_interpolation(io):
    # Resized at load time (the model is built for 2 frames of 42 px) ...
    tokens, pooled = _outputs(_create(WEIGHTS, mlp_act="gelu", num_frames=2, img_size=42), io["video_small"])
    _close(tokens, io["tokens_small"])
    _close(pooled, io["pooled_small"])
    # ... and on the fly (built for the checkpoint's 4 frames of 56 px, run on 2 frames of 42 px).
    tokens, pooled = _outputs(_create(WEIGHTS, mlp_act="gelu"), io["video_small"])
    _close(tokens, io["tokens_small"])
    _close(pooled, io["pooled_small"])


def test_official_s2_tag_sets_the_official_options():
    with torch.device("meta"):  # full-size models, no memory
        released = [("ivnext_vit_base_patch14_224", 91_017_804), ("ivnext_vit_large_patch14_224", 311_034_188)]
        for name, params in released:
            ours = timm.create_model(name)
            official = timm.create_model(f"{name}.official_s2")
            assert ours.head.query is not None and ours.blocks[0].mlp.act.approximate == "none"
            assert official.head.query is None and official.blocks[0].mlp.act.approximate == "tanh"
            assert sum(p.numel() for p in official.parameters()) == params  # the released counts (SPEC 2)
            assert official.pretrained_cfg["tag"] == "official_s2"


@pytest.mark.parametrize("name", ["ivnext_vit_base_patch14_224", "ivnext_vit_large_patch14_224"])
def test_official_s2_loads_a_local_file_by_pretrained_cfg_overlay_and_by_checkpoint_path(tmp_path, name):
    # A one-block model of the preset's width (narrow MLP, to stay fast), saved under the official names.
    small = dict(depth=1, mlp_ratio=1.0, num_frames=2, img_size=28)
    torch.manual_seed(0)
    src = timm.create_model(f"{name}.official_s2", **small).eval()
    file = tmp_path / "internvideo_next_p14.pth"
    torch.save(_to_official_names(src.state_dict()), file)
    video = torch.randn(1, 3, 2, 28, 28)
    overlay = dict(file=str(file), input_size=(3, 28, 28))
    for model in (
        timm.create_model(f"{name}.official_s2", pretrained=True, pretrained_cfg_overlay=overlay, **small),
        timm.create_model(f"{name}.official_s2", checkpoint_path=str(file), **small),
    ):
        torch.testing.assert_close(model.eval()(video), src(video), rtol=0, atol=0)


def test_pretrained_without_a_file_is_refused_naming_the_option():
    with pytest.raises(ValueError, match=r"nothing is downloaded.*pretrained_cfg_overlay=dict\(file="):
        timm.create_model("ivnext_vit_base_patch14_224.official_s2", pretrained=True)


@pytest.mark.parametrize("container", ["plain", "module", "model", "state_dict"])
@pytest.mark.parametrize("suffix", [".pth", ".bin"])
def test_containers_prefixes_and_training_only_tensors(tmp_path, official_sd, io, container, suffix):
    # Plus one tensor of each kind the official Stage-1/Stage-2 training models hold and the encoder
    # does not use (e.g. bert_decoder.0.weight, clip_pos_embed).
    sd = {**official_sd, **{p + ("0.weight" if p.endswith(".") else ""): torch.zeros(2) for p in TRAINING_ONLY}}
    if container != "plain":
        prefix = "module." if container == "module" else "model."
        sd = {container: {prefix + k: v for k, v in sd.items()}, "epoch": torch.tensor(3)}
    file = tmp_path / f"ckpt{suffix}"
    torch.save(sd, file)
    for model in (_create(file), timm.create_model(NAME, checkpoint_path=str(file), pool_query="mean",
                                                   mlp_act="gelu_tanh", **TINY).eval()):
        tokens, _ = _outputs(model, io["video"])
        _close(tokens, io["tokens_tanh"])


def test_load_state_dict_accepts_the_official_layout_inside_a_bigger_model(official_sd, io):
    holder = nn.ModuleDict({"encoder": VideoViT(pool_query="mean", mlp_act="gelu_tanh", **TINY)})
    holder.load_state_dict({f"encoder.{k}": v for k, v in official_sd.items()})
    tokens, _ = _outputs(holder["encoder"].eval(), io["video"])
    _close(tokens, io["tokens_tanh"])


def test_strict_load_names_missing_and_unexpected_keys(tmp_path, official_sd):
    sd = dict(official_sd)
    del sd["blocks.1.mlp.fc2.bias"]
    sd["blocks.1.extra.weight"] = torch.zeros(2)
    file = tmp_path / "renamed.safetensors"
    save_file(sd, str(file))
    names = r"missing \['blocks.1.mlp.fc2.bias'\].*unexpected \['blocks.1.extra.weight'\]"
    with pytest.raises(CheckpointError, match=rf"{file}.*{names}"):
        _create(file)
    names = r"(?s)Missing key.*blocks.1.mlp.fc2.bias.*Unexpected key.*blocks.1.extra.weight"
    with pytest.raises(RuntimeError, match=names):
        timm.create_model(NAME, checkpoint_path=str(file), pool_query="mean", **TINY)
    # Our default head learns its pool query; the official one has none: the error says what to do.
    with pytest.raises(CheckpointError, match=r"missing \['head.query'\].*official_s2.*pool_query='mean'"):
        _create(WEIGHTS, pool_query="learned")


@dataclasses.dataclass
class _TrainingArgs:  # an arbitrary Python object: torch.load(weights_only=True) refuses it
    lr: float = 1e-3


def _not_a_checkpoint(tmp_path, official_sd, kind):
    if kind == "text":
        (file := tmp_path / "notes.pth").write_text("these are not weights\n")
        return file, "not a checkpoint"
    if kind == "broken_safetensors":
        (file := tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        return file, "not a valid safetensors file"
    if kind == "refused_pickle":  # e.g. a whole DeepSpeed training checkpoint
        torch.save({"module": official_sd, "args": _TrainingArgs()}, file := tmp_path / "deepspeed_full.pth")
        return file, r"weights_only=True\) refuses this file.*_TrainingArgs"
    return tmp_path / "missing.pth", "no such checkpoint file"


@pytest.mark.parametrize("kind", ["text", "broken_safetensors", "refused_pickle", "missing"])
def test_a_file_that_is_not_a_readable_checkpoint_is_named_before_any_compute(tmp_path, official_sd, kind, monkeypatch):
    from ivnext_world.cli.convert import main

    file, message = _not_a_checkpoint(tmp_path, official_sd, kind)
    built = []
    monkeypatch.setattr(VideoViT, "__init__", lambda *a, **k: built.append(1))  # nothing may be built
    with pytest.raises(CheckpointError, match=rf"(?s)^{file}: .*{message}"):
        _create(file)
    with pytest.raises(CheckpointError, match=rf"(?s)^{file}: .*{message}"):
        read_state_dict(file)
    dst = tmp_path / "out.safetensors"
    assert main(["official", str(file), str(dst)]) == 2 and not dst.exists()
    assert not built


def _other_model(tmp_path, kind):
    if kind == "wider":
        model = VideoViT(**{**TINY, "embed_dim": 48}, pool_query="mean")
        message = r"another size: embed_dim 48 \(model: 32\)"
    elif kind == "deeper":
        model = VideoViT(**{**TINY, "depth": 3}, pool_query="mean")
        message = r"another size: depth 3 \(model: 2\)"
    else:
        model = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1)
        message = r"not an InternVideo-Next video encoder checkpoint.*timm ViT"
    save_file(model.state_dict(), str(file := tmp_path / f"{kind}.safetensors"))
    return file, message


@pytest.mark.parametrize("kind", ["wider", "deeper", "timm_image_vit"])
def test_a_checkpoint_of_another_size_or_family_is_named_before_any_compute(tmp_path, kind, monkeypatch):
    from ivnext_world.cli.convert import main

    file, message = _other_model(tmp_path, kind)
    monkeypatch.setattr(VideoViT, "forward", lambda *a, **k: pytest.fail("forward ran while loading"))
    with pytest.raises(CheckpointError, match=rf"(?s)^{file}: .*{message}"):
        _create(file)
    if kind == "timm_image_vit":  # the converter checks the family (any size of this family converts)
        assert main(["official", str(file), str(tmp_path / "out.safetensors")]) == 2


def test_convert_cli_writes_our_format_which_loads_without_the_official_layout(tmp_path, official_sd, io):
    src = tmp_path / "internvideo_next_tiny.pth"
    torch.save({"module": {f"module.{k}": v for k, v in official_sd.items()}, "bert_mask_token": torch.zeros(1)}, src)
    dst = tmp_path / "weights" / "ours.safetensors"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "ivnext_world.cli.convert", "official", str(src), str(dst), "--img-size", "56"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with safe_open(str(dst), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert keys == set(convert_official_keys(official_sd))
    assert "pos_embed.pos_embed" in keys and not any(k.startswith("clip_projector") for k in keys)
    assert meta["grid"] == "4,4,4" and meta["pool_query"] == "mean" and meta["mlp_act"] == "gelu_tanh"
    # The recorded grid replaces input_size: a model of another clip size loads it directly.
    model = timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=str(dst)),
                              pool_query="mean", mlp_act="gelu", **{**TINY, "num_frames": 2, "img_size": 42})
    tokens, pooled = _outputs(model.eval(), io["video_small"])
    _close(tokens, io["tokens_small"])
    _close(pooled, io["pooled_small"])


def test_load_official_encoder_picks_the_released_preset_or_asks_for_one(io):
    with pytest.raises(CheckpointError, match=r"width 32, depth 2 matches no released model.*model_name"):
        load_official_encoder(WEIGHTS)
    model = load_official_encoder(WEIGHTS, model_name=NAME, pool_query="mean", mlp_act="gelu_tanh", **TINY)
    assert not model.training
    _close(_outputs(model, io["video"])[1], io["pooled_tanh"])


def test_import_ivnext_world_alone_registers_the_presets():
    code = (
        "import sys, ivnext_world\n"
        "assert 'timm' not in sys.modules, 'import ivnext_world must stay cheap'\n"
        "import timm\n"
        "names = timm.list_models('ivnext_vit_*', include_tags=True)\n"
        "assert 'ivnext_vit_base_patch14_224.official_s2' in names, names\n"
        "assert 'ivnext_vit_large_patch14_224.official_s2' in names, names\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr


def _to_official_names(sd):
    """Our keys -> the official ones (the inverse of the documented renames)."""
    out = {}
    for k, v in sd.items():
        k = {"pos_embed.pos_embed": "pos_embed"}.get(k, k)
        if k.startswith("head."):
            part, rest = k[5:].split(".", 1)
            if part in ("norm_q", "norm_k", "norm_v"):
                k = f"clip_projector.norm1_{part[-1]}.{rest}"
            elif part in ("q", "k", "v"):
                k = f"clip_projector.cross_attn.{part}" + (".weight" if rest == "weight" else "_bias")
            else:
                k = f"clip_projector.cross_attn.{part}.{rest}"
        out[k] = v
    return out
