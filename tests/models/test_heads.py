"""Attention pooling, alignment and latent-prediction heads."""

import pytest
import torch

from ivnext_world.models import AlignmentHead, AttentionPoolHead, LatentPredictionHead


@pytest.mark.parametrize("query", ["learned", "mean"])
def test_attention_pool(query):
    head = AttentionPoolHead(32, num_heads=4, out_dim=24, query=query)
    x = torch.randn(3, 10, 32)
    pooled, attn = head(x, return_attn=True)
    assert pooled.shape == (3, 24) and attn.shape == (3, 10)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3))
    torch.testing.assert_close(head(x), pooled)
    # Pooling is permutation invariant over tokens, and the attention follows the tokens.
    perm = torch.randperm(10)
    p2, a2 = head(x[:, perm], return_attn=True)
    torch.testing.assert_close(p2, pooled)
    torch.testing.assert_close(a2, attn[:, perm])


def test_attention_pool_rejects_bad_config():
    with pytest.raises(ValueError):
        AttentionPoolHead(30, num_heads=4)
    with pytest.raises(ValueError):
        AttentionPoolHead(32, query="max")


@pytest.mark.parametrize("cls, args", [(AlignmentHead, (32, 48)), (LatentPredictionHead, (32, 48))])
def test_normalised_heads(cls, args):
    head = cls(*args)
    y = head(torch.randn(2, 7, 32))
    assert y.shape == (2, 7, 48)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(2, 7))
    y.sum().backward()
    assert all(p.grad is not None for p in head.parameters())
