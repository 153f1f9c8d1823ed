"""Frozen per-frame image teacher: local checkpoints, outputs, attention, frozen state."""

import logging

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ivnext_world.models import ImageTeacher, resize_token_grid

NAME = "vit_tiny_patch16_224"
KW = dict(img_size=32, depth=3)  # 2x2 patch grid, 3 blocks: fast on CPU


def _reference(tmp_path, fmt="safetensors", **kw):
    torch.manual_seed(0)
    ref = timm.create_model(NAME, pretrained=False, **{**KW, **kw}).eval()
    path = tmp_path / f"teacher.{fmt}"
    if fmt == "safetensors":
        save_file(ref.state_dict(), str(path))
    else:
        torch.save(ref.state_dict(), path)
    return ref, path


def _teacher(path, **kw):
    if "layers" not in kw:
        kw.setdefault("num_layers", 2)  # a 3-block teacher has 2 "inputs of the last blocks"
    return ImageTeacher(NAME, checkpoint_path=path, img_size=32, model_kwargs=dict(depth=3), **kw)


def _frames_for(ref, video):
    # What the teacher must feed the timm model: frames, re-normalised to its own mean/std.
    b, c, t, h, w = video.shape
    x = video.transpose(1, 2).reshape(b * t, c, h, w)
    x = x * torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    mean, std = ref.pretrained_cfg["mean"], ref.pretrained_cfg["std"]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_checkpoint_round_trip(tmp_path, fmt):
    ref, path = _reference(tmp_path, fmt)
    teacher = _teacher(path, layers=[0, 1])
    assert teacher.is_pretrained
    video = torch.randn(2, 3, 3, 32, 32)
    out = teacher(video)
    frames = _frames_for(ref, video)
    final, inter = ref.forward_intermediates(frames, indices=[0, 1], output_fmt="NLC")
    assert out.grid == (2, 2)
    torch.testing.assert_close(out.pooled, ref.forward_head(final, pre_logits=True))
    for got, want in zip(out.hidden, inter):
        torch.testing.assert_close(got, want)
    assert out.pooled.shape == (6, 192) and out.attn.shape == (6, 4)


def test_checkpoint_at_another_image_size_is_resampled(tmp_path):
    _, path = _reference(tmp_path)  # 32 px: 2x2 position table
    teacher = ImageTeacher(NAME, checkpoint_path=path, img_size=48, num_layers=2, model_kwargs=dict(depth=3))
    assert teacher.grid == (3, 3) and teacher(torch.randn(1, 3, 1, 48, 48)).attn.shape == (1, 9)


def test_default_layers_are_inputs_of_last_blocks(tmp_path):
    _, path = _reference(tmp_path)
    assert _teacher(path, num_layers=2).layers == [0, 1]  # inputs of blocks 1 and 2 (of 3)


def test_cls_attention_matches_timm_attention(tmp_path):
    ref, path = _reference(tmp_path)
    teacher = _teacher(path)
    video = torch.randn(1, 3, 2, 32, 32)
    captured = {}
    attn_mod = ref.blocks[-1].attn
    attn_mod.fused_attn = False  # timm's explicit path passes the softmax through attn_drop
    attn_mod.attn_drop.register_forward_hook(lambda m, i, o: captured.setdefault("attn", o))
    ref(_frames_for(ref, video))
    want = captured["attn"][:, :, 0, 1:].mean(1)
    torch.testing.assert_close(teacher(video).attn, want / want.sum(-1, keepdim=True))


def test_map_head_teacher_and_resize():
    torch.manual_seed(0)
    teacher = ImageTeacher("vit_base_patch16_siglip_224", img_size=32, num_layers=2,
                           model_kwargs=dict(depth=3, embed_dim=64, num_heads=2))
    video = torch.randn(1, 3, 2, 48, 48)  # frames are resized to 32 px for the teacher
    out = teacher(video, out_grid=(4, 4))
    assert out.grid == (4, 4) and out.pooled.shape == (2, 64)
    assert [h.shape for h in out.hidden] == [(2, 16, 64)] * 2
    assert out.attn.shape == (2, 16) and (out.attn >= 0).all()
    torch.testing.assert_close(out.attn.sum(-1), torch.ones(2))


def test_resize_token_grid_keeps_constant_fields():
    x = torch.full((2, 9, 5), 3.0)
    torch.testing.assert_close(resize_token_grid(x, (3, 3), (5, 5)), torch.full((2, 25, 5), 3.0))
    assert resize_token_grid(x, (3, 3), (3, 3)) is x


def test_random_teacher_warns_loudly(caplog):
    with caplog.at_level(logging.WARNING):
        teacher = ImageTeacher(NAME, img_size=32, model_kwargs=dict(depth=2), num_layers=1)
    assert not teacher.is_pretrained
    assert "RANDOM weights" in caplog.text


def test_frozen_and_always_eval(tmp_path):
    _, path = _reference(tmp_path)
    teacher = _teacher(path)
    wrapper = torch.nn.Sequential(teacher)
    wrapper.train()
    teacher.train(True)
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    out = teacher(torch.randn(1, 3, 1, 32, 32, requires_grad=True))
    assert not out.pooled.requires_grad and not any(h.requires_grad for h in out.hidden)


def test_mismatched_checkpoints_fail_clearly(tmp_path):
    _, wrong_width = _reference(tmp_path, embed_dim=96, num_heads=3)
    with pytest.raises(ValueError, match="shape mismatches"):
        _teacher(wrong_width)

    ref, path = _reference(tmp_path)
    state = ref.state_dict()
    state.pop("blocks.0.attn.qkv.weight")
    state["extra.weight"] = torch.zeros(1)
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    with pytest.raises(ValueError, match="blocks.0.attn.qkv.weight") as err:
        _teacher(partial)
    assert "extra.weight" in str(err.value)
    with pytest.raises(FileNotFoundError):
        _teacher(tmp_path / "missing.safetensors")
