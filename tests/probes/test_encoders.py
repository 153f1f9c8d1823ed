"""Encoder specs: random init (seeded), an image teacher through timm, missing teacher weights."""
import pytest
import torch

from ivnext_world.probes.depth.encoders import build_features, features_from_record

from ._helpers import TINY_EPD


def test_random_encoder_is_rebuilt_identically_from_its_record():
    f, rec = build_features("random", TINY_EPD, seed=3)
    g = features_from_record(rec)
    x = torch.rand(2, 3, 56, 56)
    assert all(torch.equal(a, b) for a, b in zip(f(x), g(x)))
    assert [t.shape for t in f(x)] == [(2, 48, 4, 4)] * 4


def test_image_teacher_features_and_missing_weights(tmp_path):
    f, rec = build_features("timm:vit_tiny_patch16_224:", img_size=64)  # no weights file: random timm ViT
    maps = f(torch.rand(2, 3, 80, 80))
    assert f.layers == [2, 5, 8, 11] and [m.shape for m in maps] == [(2, 192, 4, 4)] * 4
    assert rec == {"spec": "timm:vit_tiny_patch16_224:", "img_size": 64, "seed": 0}
    g = features_from_record(rec)  # the random init is a function of the seed
    x = torch.rand(2, 3, 64, 64)
    assert all(torch.equal(a, b) for a, b in zip(f(x), g(x)))
    with pytest.raises(FileNotFoundError, match="weights not found"):
        build_features(f"timm:vit_tiny_patch16_224:{tmp_path / 'nope.safetensors'}")
