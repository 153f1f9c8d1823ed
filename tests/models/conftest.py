"""Tiny CPU models shared by the model tests."""

import pytest
import timm
import torch

import ivnext_world.models  # noqa: F401  (registers the encoder presets with timm)

# 4 frames of 56x56 px with patch 14 -> a (4, 4, 4) token grid, N = 64.
FRAMES, SIZE, PATCH = 4, 56, 14
GRID = (FRAMES, SIZE // PATCH, SIZE // PATCH)


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return timm.create_model(
        "ivnext_vit_tiny_patch14_224", img_size=SIZE, num_frames=FRAMES, embed_dim=96, depth=3
    ).eval()


@pytest.fixture
def video():
    return torch.randn(2, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
