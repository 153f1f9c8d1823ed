"""Real teacher formats: timm files and HF-cache snapshots, transformers folders, for SigLIP, SigLIP2,
DINOv2 and CLIP. Each model is built at random init by its own library, saved, loaded through
``ImageTeacher`` and compared with the library's own forward; bad files fail in the constructor."""

import argparse
import shutil

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import save_for_hf

from ivnext_world.models import ImageTeacher

transformers = pytest.importorskip("transformers")  # a declared dependency; the skip only guards partial installs

TOL = dict(atol=1e-5, rtol=1e-5)
TINY_TIMM = dict(depth=3, embed_dim=32, num_heads=2)
TIMM_CASES = {  # timm name -> image size (2x2 patch grid)
    "vit_base_patch16_siglip_224.v2_webli": 32,  # SigLIP2 weights in timm's SigLIP architecture
    "vit_small_patch14_dinov2": 28,
    "vit_base_patch16_clip_224": 32,
}
HF_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, patch_size=8)
HF_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)


def _video(size, t=2):
    return torch.randn(1, 3, t, size, size, generator=torch.Generator().manual_seed(1))


def _teacher_frames(video, mean, std):
    """ImageNet-normalised clip -> frames in the teacher's own normalisation (what it must be fed)."""
    b, c, t, h, w = video.shape
    x = video.transpose(1, 2).reshape(b * t, c, h, w)
    x = x * torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _timm_ref(name):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, img_size=TIMM_CASES[name], **TINY_TIMM).eval()


def _check_timm(teacher, ref, size):
    video = _video(size)
    out = teacher(video)
    frames = _teacher_frames(video, ref.pretrained_cfg["mean"], ref.pretrained_cfg["std"])
    final, inter = ref.forward_intermediates(frames, indices=[0, 1], output_fmt="NLC")
    torch.testing.assert_close(out.pooled, ref.forward_head(final, pre_logits=True), **TOL)
    assert len(out.hidden) == 2
    for got, want in zip(out.hidden, inter):
        torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(out.attn.sum(-1), torch.ones(2))


def _hf_cache(tmp_path, export, repo_name, snapshot="0123abcd"):
    """Lay ``export``'s files out as the Hugging Face cache does: blobs, symlinked snapshot, refs/main."""
    repo = tmp_path / repo_name
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / snapshot).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    for i, f in enumerate(sorted(export.iterdir())):
        blob = repo / "blobs" / f"blob{i}"
        shutil.copy(f, blob)
        (repo / "snapshots" / snapshot / f.name).symlink_to(f"../../blobs/blob{i}")
    return repo


@pytest.mark.parametrize("name", list(TIMM_CASES))
def test_timm_file_matches_timm(tmp_path, name):
    ref = _timm_ref(name)
    path = tmp_path / "w.safetensors"
    save_file(ref.state_dict(), str(path))
    size = TIMM_CASES[name]
    teacher = ImageTeacher(name, path, layers=[0, 1], img_size=size, model_kwargs=TINY_TIMM)
    assert teacher.backend == "timm" and teacher.grid == (2, 2)
    _check_timm(teacher, ref, size)


@pytest.mark.parametrize("name", ["vit_base_patch16_siglip_224.v2_webli", "vit_small_patch14_dinov2"])
def test_timm_hf_cache_snapshot(tmp_path, name):
    ref = _timm_ref(name)
    save_for_hf(ref, str(tmp_path / "export"), safe_serialization=True)
    repo = _hf_cache(tmp_path, tmp_path / "export", f"models--timm--{name}")
    size = TIMM_CASES[name]
    # The cache repo folder resolves to its refs/main snapshot; config.json gives architecture and size.
    for model_name, path in (("auto", repo), (name, repo / "snapshots" / "0123abcd")):
        teacher = ImageTeacher(model_name, path, layers=[0, 1])
        assert teacher.backend == "timm" and teacher.img_size == (size, size)
        assert teacher.model.pretrained_cfg["mean"] == list(ref.pretrained_cfg["mean"])
        _check_timm(teacher, ref, size)


# ----------------------------------------------------------------------------- transformers
def _save_hf(kind, folder):
    """Build a tiny model of ``kind`` at random init with transformers, save it, return the vision model."""
    tf = transformers
    torch.manual_seed(0)
    if kind == "siglip":  # a full image-text checkpoint, as google/siglip* are published
        full = tf.SiglipModel(tf.SiglipConfig(vision_config={**HF_VISION, "image_size": 32}, text_config=HF_TEXT))
    elif kind == "siglip2":
        full = tf.Siglip2Model(tf.Siglip2Config(vision_config={**HF_VISION, "num_patches": 16}, text_config=HF_TEXT))
    elif kind == "clip":
        full = tf.CLIPModel(tf.CLIPConfig(vision_config={**HF_VISION, "image_size": 32}, text_config=HF_TEXT,
                                          projection_dim=16))
    elif kind == "dinov2":
        full = tf.Dinov2Model(tf.Dinov2Config(**HF_VISION, image_size=32))
    full.save_pretrained(str(folder))
    if kind == "dinov2":
        return full.eval()
    return full.vision_model.eval()


def _hf_reference(kind, model, frames, layers):
    """hidden states, pooled output and pooling attention from the library's own forward."""
    model.set_attn_implementation("eager")  # eager returns the attention probabilities it used
    if kind == "siglip2":
        r, c, h, w = frames.shape
        from transformers.models.siglip2.image_processing_siglip2 import convert_image_to_patches

        pv = torch.stack([convert_image_to_patches(f, 8) for f in frames])
        out = model(pixel_values=pv, pixel_attention_mask=torch.ones(r, pv.shape[1], dtype=torch.long),
                    spatial_shapes=torch.tensor([[h // 8, w // 8]] * r), output_hidden_states=True)
    else:
        out = model(pixel_values=frames, output_hidden_states=True, output_attentions=True)
    p = 0 if kind.startswith("siglip") else 1
    hidden = [out.hidden_states[i + 1][:, p:] for i in layers]
    if kind.startswith("siglip"):
        head = model.head
        _, attn = head.attention(head.probe.repeat(frames.shape[0], 1, 1), out.last_hidden_state,
                                 out.last_hidden_state, need_weights=True)
        attn = attn[:, 0]
    else:
        attn = out.attentions[-1][:, :, 0, p:].mean(1)
        attn = attn / attn.sum(-1, keepdim=True)
    return hidden, out.pooler_output, attn


@pytest.mark.parametrize("kind,mean", [
    ("siglip", (0.5,) * 3), ("siglip2", (0.5,) * 3),
    ("dinov2", IMAGENET_DEFAULT_MEAN), ("clip", (0.48145466, 0.4578275, 0.40821073)),
])
def test_transformers_folder_matches_transformers(tmp_path, kind, mean):
    folder = tmp_path / kind
    ref = _save_hf(kind, folder)
    teacher = ImageTeacher("auto", folder, layers=[0, 1])
    assert teacher.backend == "transformers" and teacher.is_pretrained
    assert teacher.img_size == (32, 32) and teacher.grid == (4, 4) and teacher.embed_dim == 32
    video = _video(32)
    out = teacher(video)
    std = {"siglip": (0.5,) * 3, "siglip2": (0.5,) * 3, "dinov2": IMAGENET_DEFAULT_STD,
           "clip": (0.26862954, 0.26130258, 0.27577711)}[kind]
    hidden, pooled, attn = _hf_reference(kind, ref, _teacher_frames(video, mean, std), [0, 1])
    torch.testing.assert_close(out.pooled, pooled, **TOL)
    for got, want in zip(out.hidden, hidden):
        assert got.shape == (2, 16, 32)
        torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(out.attn, attn, **TOL)


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_transformers_teacher_at_another_image_size(tmp_path, kind):
    ref = _save_hf(kind, tmp_path / kind)  # trained at 32 px: a 4x4 position table
    teacher = ImageTeacher("auto", tmp_path / kind, layers=[1], img_size=48)
    assert teacher.grid == (6, 6)
    video = _video(48, t=1)
    frames = _teacher_frames(video, *((0.5,) * 3, (0.5,) * 3) if kind == "siglip" else
                             ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)))
    want = ref(pixel_values=frames, output_hidden_states=True, interpolate_pos_encoding=True)
    out = teacher(video)
    torch.testing.assert_close(out.pooled, want.pooler_output, **TOL)
    torch.testing.assert_close(out.hidden[0], want.hidden_states[2][:, 0 if kind == "siglip" else 1:], **TOL)


def test_transformers_cache_folder_and_preprocessor_config(tmp_path):
    export = tmp_path / "export"
    ref = _save_hf("dinov2", export)
    # preprocessor_config.json (as the hub ships it) decides size and normalisation.
    (export / "preprocessor_config.json").write_text(
        '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "do_center_crop": true,'
        ' "crop_size": {"height": 48, "width": 48}, "size": {"shortest_edge": 56}}')
    repo = _hf_cache(tmp_path, export, "models--facebook--dinov2-tiny")
    teacher = ImageTeacher("auto", repo, layers=[2])
    assert teacher.img_size == (48, 48) and teacher.grid == (6, 6)
    video = _video(48, t=1)
    out = teacher(video)
    hidden, pooled, _ = _hf_reference("dinov2", ref, _teacher_frames(video, (0.5,) * 3, (0.25,) * 3), [2])
    torch.testing.assert_close(out.hidden[0], hidden[0], **TOL)
    torch.testing.assert_close(out.pooled, pooled, **TOL)


# ----------------------------------------------------------------------------- bad input
def test_not_a_checkpoint(tmp_path):
    for name, data in (("junk.pth", b"definitely not a pickle"), ("junk.safetensors", b"\x00\x01garbage")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match="not a checkpoint") as err:
            ImageTeacher("vit_small_patch14_dinov2", path, model_kwargs=TINY_TIMM, img_size=28, num_layers=1)
        assert str(path) in str(err.value)


def test_pickle_refused_by_weights_only(tmp_path):
    ref = _timm_ref("vit_small_patch14_dinov2")
    path = tmp_path / "train_state.pth"
    # A training state with a numpy scalar, as many released .pth files have: not a plain state dict.
    torch.save({"state_dict": ref.state_dict(), "best_acc": np.float64(0.5)}, path)
    with pytest.raises(ValueError, match="weights_only=True\\) refuses") as err:
        ImageTeacher("vit_small_patch14_dinov2", path, model_kwargs=TINY_TIMM, img_size=28, num_layers=1)
    assert str(path) in str(err.value) and "numpy" in str(err.value)
    # timm's reader allows argparse.Namespace (plain data), so such a file loads.
    torch.save({"state_dict": ref.state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    ImageTeacher("vit_small_patch14_dinov2", path, model_kwargs=TINY_TIMM, img_size=28, num_layers=1)


def test_timm_checkpoint_of_another_family_or_size(tmp_path):
    clip = tmp_path / "clip.safetensors"
    save_file(_timm_ref("vit_base_patch16_clip_224").state_dict(), str(clip))
    with pytest.raises(ValueError, match="does not match the teacher architecture") as err:
        ImageTeacher("vit_base_patch16_siglip_224", clip, model_kwargs=TINY_TIMM, img_size=32, num_layers=1)
    assert str(clip) in str(err.value)
    with pytest.raises(ValueError, match="shape mismatches \\([1-9]"):  # same family, 48 wide instead of 32
        ImageTeacher("vit_base_patch16_clip_224", clip, model_kwargs={**TINY_TIMM, "embed_dim": 48},
                     img_size=32, num_layers=1)
    save_for_hf(_timm_ref("vit_small_patch14_dinov2"), str(tmp_path / "dino"), safe_serialization=True)
    with pytest.raises(ValueError, match="another architecture"):
        ImageTeacher("vit_base_patch16_clip_224", tmp_path / "dino")


def test_transformers_folder_of_another_family_or_size(tmp_path):
    _save_hf("dinov2", tmp_path / "dino")
    with pytest.raises(ValueError, match="another family") as err:
        ImageTeacher("vit_base_patch16_siglip_224", tmp_path / "dino")
    assert str(tmp_path / "dino") in str(err.value)
    with pytest.raises(ValueError, match="another size"):  # vit_small_patch14_dinov2 is 384 wide
        ImageTeacher("vit_small_patch14_dinov2", tmp_path / "dino")
    with pytest.raises(ValueError, match="set teacher.model=auto"):
        ImageTeacher("vit_tiny_patch16_224", tmp_path / "dino")
    # A config.json whose width disagrees with the weights next to it.
    cfg = (tmp_path / "dino" / "config.json").read_text().replace('"hidden_size": 32', '"hidden_size": 64')
    (tmp_path / "dino" / "config.json").write_text(cfg)
    with pytest.raises(ValueError, match="do not match its config.json") as err:
        ImageTeacher("auto", tmp_path / "dino")
    assert str(tmp_path / "dino") in str(err.value) and "checkpoint (32,) vs model (64,)" in str(err.value)


def test_transformers_folder_without_config(tmp_path):
    _save_hf("clip", tmp_path / "clip")
    (tmp_path / "clip" / "config.json").unlink()
    with pytest.raises(ValueError, match="has no config.json") as err:
        ImageTeacher("auto", tmp_path / "clip")
    assert str(tmp_path / "clip") in str(err.value)
    with pytest.raises(ValueError, match="bare weights file"):
        ImageTeacher("auto", tmp_path / "clip" / "model.safetensors")
