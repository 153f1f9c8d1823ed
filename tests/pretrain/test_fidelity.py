"""Fidelity to the official InternVideo-Next code: each official variant against a hand-computed
reference, our earlier behaviour behind a switch, switches composed from config, and checkpoints
saved before the switches existed rebuilding with what they were trained with."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from ivnext_world.config import load_config
from ivnext_world.masking import attention_guided_mask, gather_tokens, visible_count, visible_indices
from ivnext_world.models import AlignmentHead, ImageTeacher, LatentPredictionHead
from ivnext_world.models.pos_embed import sincos_3d_table
from ivnext_world.pretrain import EPDConfig, Stage1Loss, Stage1Objective, build_epd
from ivnext_world.pretrain.run import load_epd
from ivnext_world.pretrain.stage1 import _per_token_time
from ivnext_world.pretrain.stage2 import stage2_from_stage1
from ivnext_world.train import save_checkpoint
from ivnext_world.train.checkpoint import TrainState

from ._helpers import tiny_cfg

NEW_KEYS = ("decoder_learn_sigma", "decoder_pixel_order", "align_pos_embed", "latent_head_kind")


def teacher():
    torch.manual_seed(0)
    return ImageTeacher("vit_tiny_patch16_224", img_size=56, num_layers=2, model_kwargs={"depth": 3})


def video(b=2, seed=0):
    return torch.randn(b, 3, 4, 56, 56, generator=torch.Generator().manual_seed(seed))


class UnevenNorms(torch.nn.Module):
    """The tiny teacher with its pooled outputs rescaled per frame (a real teacher's norms vary): the
    official target averages the frames' UNIT vectors, so the norms must not weigh the mean."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.embed_dim = inner, inner.embed_dim

    def forward(self, v, out_grid=None):
        out = self.inner(v, out_grid=out_grid)
        scale = torch.tensor([1.0, 20.0, 0.05, 3.0]).repeat(v.shape[0]).unsqueeze(-1)  # (B*T, 1)
        return dataclasses.replace(out, pooled=out.pooled * scale)


def _mask_and_teacher(model, t, v, ratio, seed):
    """The teacher outputs and the attention-guided mask the objective draws with this seed."""
    enc = model.encoder
    b, grid = v.shape[0], enc.token_grid(v.shape[2:])
    tout = t(v, out_grid=grid[1:])
    mask = attention_guided_mask(_per_token_time(tout.attn, b, grid[0], enc.tubelet_size), ratio,
                                 generator=torch.Generator().manual_seed(seed))
    return tout, mask, grid


def cos_loss(a, b):
    return (2 - 2 * F.cosine_similarity(a, b, dim=-1)).mean()


@pytest.mark.parametrize("mode", ["clip", "frame"])
def test_final_alignment_equals_hand_computed_reference(mode):
    t = UnevenNorms(teacher())
    torch.manual_seed(1)
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim, decoder="none")).eval()
    v, ratio = video(), 0.75
    loss, metrics = Stage1Objective(Stage1Loss(w_middle=0, w_recon=0, final_align=mode), t)(
        model, {"video": v}, torch.Generator().manual_seed(5))
    with torch.no_grad():
        enc = model.encoder
        tout, mask, (t_, h_, w_) = _mask_and_teacher(model, t, v, ratio, seed=5)
        final = enc.forward_features(v, mask)  # (B, 4 + N_vis, D)
        if mode == "clip":
            # ONE pooled output of the clip (cls + visible tokens) vs. the mean over frames of the
            # teacher's L2-normalised pooled outputs (official engine_for_stage1.py:104).
            student = model.final_align_head(enc.forward_head(final))  # (B, Dt)
            target = F.normalize(tout.pooled, dim=-1).reshape(2, 4, -1).mean(1)  # (B, Dt)
            assert student.shape == (2, t.embed_dim)
        else:
            patches = final[:, enc.num_prefix_tokens:].reshape(2 * t_, -1, enc.embed_dim)  # per frame
            student = model.final_align_head(enc.forward_head(patches))  # (B*T, Dt)
            target = tout.pooled  # (B*T, Dt)
        expected = cos_loss(student, target)
    torch.testing.assert_close(metrics["loss_final"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_clip_and_frame_alignment_differ_and_clip_is_the_default():
    assert Stage1Loss().final_align == "clip"
    t = teacher()
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim, decoder="none")).eval()
    run = lambda mode: Stage1Objective(Stage1Loss(w_middle=0, w_recon=0, final_align=mode), t)(  # noqa: E731
        model, {"video": video()}, torch.Generator().manual_seed(0))[0]
    assert abs(run("clip").item() - run("frame").item()) > 1e-4
    with pytest.raises(ValueError, match="final_align"):
        Stage1Loss(final_align="pooled")


def test_alignment_position_table_is_added_before_the_middle_heads():
    t = teacher()
    torch.manual_seed(2)
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim, decoder="none")).eval()
    enc, ape = model.encoder, model.align_pos_embed
    # Official clip_pos_embed: learnable, 3-D sin-cos init, patch rows only (the heads drop the cls).
    assert ape is not None and ape.pos_embed.requires_grad
    torch.testing.assert_close(ape.pos_embed[0], sincos_3d_table(enc.embed_dim, (4, 4, 4)))
    with torch.no_grad():
        ape.pos_embed.add_(0.3 * torch.randn_like(ape.pos_embed))  # as after training
    ratio = 0.75
    obj = Stage1Objective(Stage1Loss(w_final=0, w_recon=0), t)
    loss, metrics = obj(model, {"video": video()}, torch.Generator().manual_seed(3))
    with torch.no_grad():
        tout, mask, grid = _mask_and_teacher(model, t, video(), ratio, seed=3)
        _, inter = enc.forward_intermediates(video(), mask, indices=2)
        vis = visible_indices(mask, visible_count(grid, ratio))
        pos = gather_tokens(ape.pos_embed.expand(2, -1, -1), vis)  # (B, N_vis, D), one table for all blocks
        expected = 0
        for head, student, hidden in zip(model.align_heads, inter, tout.hidden[-2:]):
            target = gather_tokens(hidden.reshape(2, 4 * 16, -1), vis)  # frames are token-frames (tubelet 1)
            expected = expected + cos_loss(head(student + pos), target)
    torch.testing.assert_close(metrics["loss_middle"], expected / 2, rtol=1e-5, atol=1e-6)
    # Without the table (the switch) the same weights give the loss of the un-shifted tokens.
    plain = build_epd(tiny_cfg(teacher_dim=t.embed_dim, decoder="none", align_pos_embed=False)).eval()
    assert plain.align_pos_embed is None
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("align_pos_embed.")})
    _, m_plain = obj(plain, {"video": video()}, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ape.pos_embed.zero_()
    _, m_zero = obj(model, {"video": video()}, torch.Generator().manual_seed(3))
    torch.testing.assert_close(m_zero["loss_middle"], m_plain["loss_middle"])
    assert abs(m_plain["loss_middle"].item() - metrics["loss_middle"].item()) > 1e-4


def test_alignment_position_table_trains_and_is_frozen_without_middle_alignment():
    t = teacher()
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim, decoder="none"))
    loss, _ = Stage1Objective(Stage1Loss(w_recon=0), t)(model, {"video": video()}, torch.Generator().manual_seed(0))
    loss.backward()
    assert model.align_pos_embed.pos_embed.grad.abs().sum() > 0
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim, decoder="none"))
    Stage1Objective(Stage1Loss(w_middle=0, w_recon=0), t).freeze_unused(model)
    assert not model.align_pos_embed.pos_embed.requires_grad  # DDP runs without find_unused_parameters


def test_stage2_head_is_the_official_mlp_by_default():
    torch.manual_seed(0)
    model = build_epd(tiny_cfg(decoder="none", latent_head=True, predictor_dim=32))
    head = model.latent_head
    assert isinstance(head, AlignmentHead)
    # Linear(D_pred, D_pred) -> GELU -> Linear(D_pred, D_enc) -> LayerNorm -> L2 (official selfdist_decoder)
    assert head.mlp.fc1.weight.shape == (32, 32) and head.mlp.fc2.weight.shape == (48, 32)
    x = torch.randn(3, 5, 32)
    with torch.no_grad():
        h = F.linear(F.gelu(F.linear(x, head.mlp.fc1.weight, head.mlp.fc1.bias)), head.mlp.fc2.weight, head.mlp.fc2.bias)
        expected = F.normalize(F.layer_norm(h, (48,), head.norm.weight, head.norm.bias), dim=-1)
        torch.testing.assert_close(head(x), expected)
    linear = build_epd(tiny_cfg(decoder="none", latent_head=True, latent_head_kind="linear")).latent_head
    assert isinstance(linear, LatentPredictionHead)
    with pytest.raises(ValueError, match="latent_head_kind"):
        EPDConfig(latent_head_kind="deep")


def test_switches_compose_from_config():
    cfg = load_config("pretrain", [])
    assert (cfg.loss.final_align, cfg.model.align_pos_embed, cfg.model.decoder_learn_sigma,
            cfg.model.decoder_pixel_order, cfg.model.latent_head_kind) == ("clip", True, True, "cthw", "mlp")
    cfg = load_config("pretrain", ["loss.final_align=frame", "model.align_pos_embed=false",
                                   "model.decoder_learn_sigma=false", "model.decoder_pixel_order=thwc",
                                   "model.latent_head_kind=linear"])
    from omegaconf import OmegaConf

    pc = OmegaConf.to_object(cfg)
    assert pc.loss.final_align == "frame"
    model = build_epd(tiny_cfg(teacher_dim=64, latent_head=True, **{k: getattr(pc.model, k) for k in NEW_KEYS}))
    assert model.align_pos_embed is None and not model.decoder.learn_sigma
    assert model.decoder.pixel_order == "thwc" and isinstance(model.latent_head, LatentPredictionHead)
    assert model.decoder.net.out.out_features == 3 * 14 * 14
    official = build_epd(tiny_cfg(teacher_dim=64))
    assert official.decoder.learn_sigma and official.decoder.net.out.out_features == 2 * 3 * 14 * 14
    assert official.decoder.pixel_order == "cthw" and official.align_pos_embed is not None
    with pytest.raises(Exception, match="final_align"):
        OmegaConf.to_object(load_config("pretrain", ["loss.final_align=pooled"]))
    with pytest.raises(Exception, match="decoder_pixel_order"):
        OmegaConf.to_object(load_config("pretrain", ["model.decoder_pixel_order=hwc"]))


def _legacy_checkpoint(root, **kw):
    """A checkpoint as written before the switches existed: old modules, no new keys in its config."""
    torch.manual_seed(0)
    old = dict(decoder_learn_sigma=False, decoder_pixel_order="thwc", align_pos_embed=False, latent_head_kind="linear")
    model = build_epd(tiny_cfg(**{**old, **kw}))
    stored = {k: v for k, v in model.config_dict().items() if k not in NEW_KEYS}
    save_checkpoint(root / "checkpoints", model, None, TrainState(step=1, data={}, extra={"model": stored, "stage": 1}))
    return model


def test_checkpoints_without_the_new_keys_load_with_the_old_behaviour(tmp_path):
    old = _legacy_checkpoint(tmp_path / "s1", teacher_dim=64)
    state = json.loads(next((tmp_path / "s1" / "checkpoints").glob("step_*/state.json")).read_text())
    assert not set(NEW_KEYS) & set(state["extra"]["model"])
    model, _ = load_epd(tmp_path / "s1")  # strict load: an official-shaped module would fail it
    assert not model.decoder.learn_sigma and model.decoder.pixel_order == "thwc"
    assert model.decoder.net.out.out_features == 3 * 14 * 14 and model.align_pos_embed is None
    for k, v in old.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    # Stage 2 from it: the encoder and predictor as trained, a fresh head of Stage 2's choosing.
    ckpt = next((tmp_path / "s1" / "checkpoints").glob("step_*"))
    student, _ = stage2_from_stage1(str(ckpt / "model.safetensors"), state["extra"]["model"])
    assert isinstance(student.latent_head, AlignmentHead)
    student, _ = stage2_from_stage1(str(ckpt / "model.safetensors"), state["extra"]["model"], "linear")
    assert isinstance(student.latent_head, LatentPredictionHead)
    # An old Stage-2 checkpoint keeps its Linear-LayerNorm head.
    _legacy_checkpoint(tmp_path / "s2", decoder="none", latent_head=True)
    assert isinstance(load_epd(tmp_path / "s2")[0].latent_head, LatentPredictionHead)
