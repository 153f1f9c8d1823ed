"""The Backbone interface against each library's own forward (random weights, tiny models, CPU).

Every backbone is built by its own library, saved in the format users keep, loaded through
``load_backbone(spec)`` and compared with that library's forward on the same normalised frames:
last-layer patch tokens, prefix tokens, pooled vector, hidden states at chosen blocks, whole clips.
"""
import logging

import pytest
import timm
import torch

from ivnext_world.backbones import BackboneInputError, backbone_from_record, load_backbone, probe_layers
from ivnext_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD

from ._backbone_helpers import (
    dinov2_hf_folder, official_checkpoint, siglip_hf_folder, timm_dinov2_folder, vjepa2_folder,
)

transformers = pytest.importorskip("transformers")  # a declared dependency; the skip only guards partial installs

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Tiny models run faster on one thread (tests/conftest.py)."""


def frames(size, b=2, t=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, size, size), generator=g, dtype=torch.uint8)


def normalised(x, mean, std):
    """What the backbone must feed its model: frames already at its size, scaled and normalised."""
    y = x.float() / 255
    return (y - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def close(a, b):
    torch.testing.assert_close(a, b, **TOL)


# ---------------------------------------------------------------------- our encoder
def test_our_run_folder_matches_the_encoder_and_the_old_latents(tmp_path):
    from ivnext_world.pretrain import EPDConfig, build_epd
    from ivnext_world.train.checkpoint import TrainState, save_checkpoint
    from ivnext_world.world_model.latents import encode_video

    torch.manual_seed(0)
    epd = build_epd(EPDConfig(img_size=56, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 3, "num_heads": 2,
                                                                          "pool_num_heads": 2}, decoder="none"))
    ckpt = save_checkpoint(tmp_path / "checkpoints", epd, None,
                           TrainState(step=1, data={}, extra={"model": epd.config_dict(), "stage": 1}))
    bb = load_backbone(str(tmp_path))
    assert (bb.kind, bb.img_size, bb.grid, bb.num_prefix_tokens, bb.tubelet_size) == ("ours", 56, (4, 4), 4, 1)
    assert bb.record == {"spec": str(ckpt.resolve()), "img_size": 56}
    enc = epd.encoder.eval()
    x = frames(56)
    out = bb.encode(x, layers=[0, -1])
    ref_in = normalised(x, IMAGENET_MEAN, IMAGENET_STD).flatten(0, 1).unsqueeze(2)  # (4, 3, 1, 56, 56)
    with torch.no_grad():
        final, inter = enc.forward_intermediates(ref_in, indices=[0, 2])
        pooled = enc.forward_head(final)
    close(out.patches.flatten(0, 1), final[:, 4:])
    close(out.prefix.flatten(0, 1), final[:, :4])
    close(out.pooled.flatten(0, 1), pooled)
    for got, want in zip(out.hidden, inter):
        close(got.flatten(0, 1), want)
    close(out.hidden[-1], out.patches)  # no final norm: the last block's output is the latent
    # The world model's latents: bit for bit what the bare-encoder path computed before backbones existed.
    video = bb.transform()(x.flatten(0, 1)).unflatten(0, (2, 2))
    assert torch.equal(bb.latents(video), encode_video(enc, video))
    assert torch.equal(backbone_from_record(bb.record).latents(video), bb.latents(video))


# ---------------------------------------------------------------------- official InternVideo-Next
def test_official_layout_matches_our_encoder_on_the_same_weights(tmp_path):
    spec, ref = official_checkpoint(tmp_path)
    bb = load_backbone(spec, img_size=56)
    assert (bb.kind, bb.num_prefix_tokens, bb.embed_dim, bb.pool_dim, bb.grid) == ("official", 4, 192, 192, (4, 4))
    assert bb.encoder.head.query is None  # the released pooling: the mean of all tokens as query
    x = frames(56)
    out = bb.encode(x, layers=probe_layers(bb.depth))
    ref_in = normalised(x, IMAGENET_MEAN, IMAGENET_STD).flatten(0, 1).unsqueeze(2)
    with torch.no_grad():
        final, inter = ref.forward_intermediates(ref_in, indices=probe_layers(4))
        pooled = ref.forward_head(final)
        clip = ref.forward_features(normalised(x, IMAGENET_MEAN, IMAGENET_STD).transpose(1, 2))
    close(out.patches.flatten(0, 1), final[:, 4:])
    close(out.pooled.flatten(0, 1), pooled)
    assert len(out.hidden) == 4 and all(torch.allclose(g.flatten(0, 1), w, **TOL) for g, w in zip(out.hidden, inter))
    video = normalised(x, IMAGENET_MEAN, IMAGENET_STD).transpose(1, 2)  # (B, 3, T, S, S): the clip in one pass
    close(bb.forward_clip(video), clip[:, 4:].unflatten(1, (2, 16)))
    assert bb(video).shape == (2, 2 * 16, 192)


def test_official_fixture_outputs_through_the_backbone():
    """The committed official-code fixture (tests/fixtures/official): the official model's tokens,
    reproduced by our encoder behind the Backbone interface (clip mode, tanh GELU)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from ivnext_world.backbones.video_vit import VideoViTBackbone

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "official"
    io = load_file(str(fixture / "official_tiny_io.safetensors"))
    enc = timm.create_model(
        "ivnext_vit_tiny_patch14_224", pretrained=True, embed_dim=32, depth=2, num_heads=2, pool_num_heads=2,
        pool_dim=16, num_frames=4, img_size=56, pool_query="mean", mlp_act="gelu_tanh",
        pretrained_cfg_overlay=dict(file=str(fixture / "official_tiny.safetensors"), input_size=(3, 56, 56))).eval()
    bb = VideoViTBackbone(enc, 56, "official-fixture", kind="official")
    with torch.no_grad():
        close(bb(io["video"]), io["tokens_tanh"])


# ---------------------------------------------------------------------- V-JEPA 2
def test_vjepa2_matches_transformers(tmp_path):
    spec, ref = vjepa2_folder(tmp_path)
    bb = load_backbone(spec)
    assert (bb.kind, bb.img_size, bb.patch_size, bb.tubelet_size, bb.num_prefix_tokens) == ("vjepa2", 32, 16, 2, 0)
    assert (bb.mean, bb.std) == (IMAGENET_MEAN, IMAGENET_STD)
    x = frames(32, t=2)
    out = bb.encode(x, layers=[0, 1, 2])
    per_frame = normalised(x, IMAGENET_MEAN, IMAGENET_STD).flatten(0, 1)  # (4, 3, 32, 32)
    layer_out = {}

    def keep(k):
        return lambda m, i, o: layer_out.__setitem__(k, o[0] if isinstance(o, tuple) else o)

    hooks = [layer.register_forward_hook(keep(k)) for k, layer in enumerate(ref.encoder.layer)]
    with torch.no_grad():  # each frame as a clip of itself repeated over the tubelet
        want = ref(pixel_values_videos=per_frame.unsqueeze(1).repeat(1, 2, 1, 1, 1), skip_predictor=True)
    for h in hooks:
        h.remove()
    close(out.patches.flatten(0, 1), want.last_hidden_state)  # (4, 4 patches, 48)
    close(out.pooled.flatten(0, 1), want.last_hidden_state.mean(1))
    for k, got in enumerate(out.hidden):  # block k's output through the encoder's final LayerNorm
        close(got.flatten(0, 1), ref.encoder.layernorm(layer_out[k]))
    close(out.hidden[-1], out.patches)
    assert out.prefix.shape == (2, 2, 0, 48)
    # A clip of 4 frames in one pass: 2 token-frames, attention across time, the library's forward.
    clip = frames(32, b=1, t=4, seed=1)
    video = normalised(clip, IMAGENET_MEAN, IMAGENET_STD)  # (1, 4, 3, 32, 32)
    with torch.no_grad():
        want = ref(pixel_values_videos=video, skip_predictor=True).last_hidden_state
    close(bb.forward_clip(video.transpose(1, 2)), want.unflatten(1, (2, 4)))
    with pytest.raises(BackboneInputError, match="tubelets"):
        bb.forward_clip(video[:, :3].transpose(1, 2))


def test_vjepa2_at_another_size_is_the_library_model_at_that_crop_size(tmp_path):
    from transformers import VJEPA2Model

    spec, _ = vjepa2_folder(tmp_path)
    bb = load_backbone(spec, img_size=48)
    assert bb.grid == (3, 3) and bb.record["img_size"] == 48
    ref = VJEPA2Model.from_pretrained(spec.split(":", 1)[1], crop_size=48).eval()
    x = frames(48, b=1, t=1)
    with torch.no_grad():
        want = ref(pixel_values_videos=normalised(x, IMAGENET_MEAN, IMAGENET_STD).repeat(1, 2, 1, 1, 1),
                   skip_predictor=True).last_hidden_state
    close(bb.encode(x).patches[0], want)


# ---------------------------------------------------------------------- image models
@pytest.mark.parametrize("registers", [0, 2])
def test_dinov2_transformers_folder_matches_transformers(tmp_path, registers):
    spec, ref = dinov2_hf_folder(tmp_path, registers)
    bb = load_backbone(spec)
    p = 1 + registers
    assert (bb.kind, bb.img_size, bb.grid, bb.num_prefix_tokens, bb.tubelet_size) == ("hf", 56, (4, 4), 0, 1)
    x = frames(56)
    out = bb.encode(x, layers=[0, -1])
    with torch.no_grad():
        want = ref(pixel_values=normalised(x, bb.mean, bb.std).flatten(0, 1), output_hidden_states=True)
    close(out.patches.flatten(0, 1), want.last_hidden_state[:, p:])  # DINO-WM: normed patch tokens, no cls
    close(out.pooled.flatten(0, 1), want.pooler_output)  # the normed cls token
    close(out.hidden[0].flatten(0, 1), ref.layernorm(want.hidden_states[1])[:, p:])
    close(out.hidden[1], out.patches)
    assert (bb.mean, bb.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_siglip2_transformers_folder_matches_transformers(tmp_path):
    spec, ref = siglip_hf_folder(tmp_path)
    bb = load_backbone(spec)
    assert (bb.img_size, bb.grid, bb.mean, bb.std) == (32, (4, 4), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    x = frames(32)
    out = bb.encode(x, layers=[1, 2])
    with torch.no_grad():
        want = ref(pixel_values=normalised(x, bb.mean, bb.std).flatten(0, 1), output_hidden_states=True)
    close(out.patches.flatten(0, 1), want.last_hidden_state)
    close(out.pooled.flatten(0, 1), want.pooler_output)  # the attention-pool head
    close(out.hidden[0].flatten(0, 1), ref.post_layernorm(want.hidden_states[2]))
    close(out.hidden[1], out.patches)


def test_timm_dinov2_folder_matches_timm(tmp_path):
    spec, ref = timm_dinov2_folder(tmp_path)
    bb = load_backbone(spec)
    assert (bb.kind, bb.img_size, bb.grid, bb.depth) == ("timm", 56, (4, 4), 3)
    x = frames(56)
    out = bb.encode(x, layers=[0, 2])
    inp = normalised(x, ref.pretrained_cfg["mean"], ref.pretrained_cfg["std"]).flatten(0, 1)
    with torch.no_grad():
        final = ref.forward_features(inp)
        inter = ref.forward_intermediates(inp, indices=[0, 2], norm=True, output_fmt="NLC", intermediates_only=True)
    close(out.patches.flatten(0, 1), final[:, 1:])  # DINO-WM's x_norm_patchtokens
    close(out.pooled.flatten(0, 1), ref.forward_head(final, pre_logits=True))
    for got, want in zip(out.hidden, inter):
        close(got.flatten(0, 1), want)


def test_timm_name_without_a_file_is_a_seeded_random_init_loudly_labelled(caplog):
    with caplog.at_level(logging.WARNING):
        bb = load_backbone("timm:vit_small_patch14_dinov2", img_size=28)
    assert not bb.is_pretrained and "RANDOM weights" in caplog.text and "RANDOM" in bb.describe()
    assert bb.grid == (2, 2) and bb.embed_dim == 384 and bb.record == {
        "spec": "timm:vit_small_patch14_dinov2", "img_size": 28, "seed": 0}
    assert backbone_from_record(bb.record).fingerprint() == bb.fingerprint()
    assert load_backbone("timm:vit_small_patch14_dinov2", img_size=28, seed=1).fingerprint() != bb.fingerprint()


def test_timm_kwargs_build_another_size_and_rebuild_from_the_record():
    kw = {"embed_dim": 16, "depth": 1, "num_heads": 2}
    bb = load_backbone("timm:vit_tiny_patch16_224", img_size=32, timm_kwargs=kw)
    assert (bb.embed_dim, bb.depth, bb.num_heads, bb.grid) == (16, 1, 2, (2, 2)) and bb.record["timm_kwargs"] == kw
    assert backbone_from_record(bb.record).fingerprint() == bb.fingerprint()
    with pytest.raises(ValueError, match="timm:<model> specs only"):
        load_backbone("random", timm_kwargs=kw)


# ---------------------------------------------------------------------- interface and errors
def test_latent_sizes_for_any_grid_and_prefix(tmp_path):
    dino = load_backbone(dinov2_hf_folder(tmp_path)[0])
    assert dino.tokens_per_frame() == 16 and dino.tokens_per_frame(pool=2) == 4
    video = dino.transform()(frames(80, b=1, t=3)[0])[None]  # 80 px -> short side 56, centre crop
    assert video.shape == (1, 3, 3, 56, 56) and dino.latents(video, pool=2).shape == (1, 3, 4, 32)
    with pytest.raises(ValueError, match="pool=3"):
        dino.tokens_per_frame(pool=3)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        dino.encode(frames(56)[0])


def test_bad_specs_fail_before_compute_naming_the_file(tmp_path):
    from ivnext_world.models.official import CheckpointError

    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_backbone(f"official:{missing}")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_backbone(f"official:{text}")
    spec, _ = official_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="matches no released model"):  # a checkpoint of another size
        load_backbone(f"official:{spec.rsplit(':', 1)[1]}")
    with pytest.raises(ValueError, match="is a file"):  # a checkpoint file named as a run folder
        load_backbone(spec.rsplit(":", 1)[1])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_backbone(f"vjepa2:{empty}")
    with pytest.raises(ValueError, match="no config.json"):
        load_backbone(f"hf:{empty}")
    dino_spec, _ = dinov2_hf_folder(tmp_path)
    with pytest.raises(ValueError, match="not a V-JEPA 2 model"):
        load_backbone("vjepa2:" + dino_spec.split(":", 1)[1])
    with pytest.raises(ValueError, match="timm has no model"):
        load_backbone("timm:vit_nonexistent_patch14")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_backbone(f"timm:vit_small_patch14_dinov2:{missing}")
    with pytest.raises(FileNotFoundError, match="no such pretraining run"):
        load_backbone(str(tmp_path / "no_run"))


@pytest.mark.slow
def test_dino_wm_geometry_flows_through_the_world_model():
    """DINOv2 ViT-S/14 at 224 px as DINO-WM runs it: a 16x16 grid of 384-wide patch tokens, no cls,
    through the action-conditioned predictor's encode -> cached rollout."""
    from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor, NormStats, WorldModel

    bb = load_backbone("timm:vit_small_patch14_dinov2", img_size=224)  # the random-init baseline
    torch.manual_seed(0)
    pred = ActionConditionedPredictor(ACPredictorConfig(enc_dim=384, tokens_per_frame=256, action_dim=2,
                                                        embed_dim=32, depth=1, num_heads=2, max_frames=8))
    torch.nn.init.normal_(pred.output_proj.weight, std=0.05)
    wm = WorldModel(bb, pred, NormStats([0.0, 0.0], [1.0, 1.0]))
    assert (wm.tokens_per_frame, wm.num_prefix_tokens, wm.embed_dim) == (256, 0, 384)
    z = wm.encode(frames(256, b=1, t=2))  # 256 px frames -> 224 centre crop
    assert z.shape == (1, 2, 256, 384)
    acts = torch.randn(2, 2, 2, generator=torch.Generator().manual_seed(0))
    out = wm.rollout(z, acts)
    assert out.shape == (2, 2, 256, 384)
    torch.testing.assert_close(out, wm.rollout(z, acts, use_cache=False), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="another backbone or size"):  # a predictor for another token count
        WorldModel(bb, pred, NormStats([0.0, 0.0], [1.0, 1.0]), pool=2)
