"""Head output shapes on tiny features, the bins/regression outputs, and the 4-layer choice."""
import pytest
import torch

from ivnext_world.probes.depth import DepthHeadConfig, DepthProbe, probe_layers


@pytest.mark.parametrize("kind", ["linear", "linear4", "dpt"])
@pytest.mark.parametrize("output", ["bins", "regression"])
def test_head_output_shape_and_range(kind, output):
    cfg = DepthHeadConfig(kind=kind, output=output, num_bins=16, min_depth=0.5, max_depth=4.0, dpt_features=8)
    probe = DepthProbe(cfg, embed_dim=12)
    feats = [torch.randn(2, 12, 4, 5) for _ in range(cfg.num_inputs)]
    d = probe(feats, (30, 37))
    assert d.shape == (2, 30, 37)
    assert d.min() >= 0.5 - 1e-4 and d.max() <= 4.0 + 1e-4  # expected value of bins / squashed log-depth
    d.mean().backward()
    assert all(p.grad is not None for p in probe.parameters() if p.requires_grad)
    # the imagined-latent path: last layer only
    assert probe.from_last_layer(feats[-1], (8, 8)).shape == (2, 8, 8)


def test_bins_expected_value_of_a_one_hot_is_that_bin():
    cfg = DepthHeadConfig(kind="linear", num_bins=8, min_depth=1.0, max_depth=128.0, upsample=1)
    probe = DepthProbe(cfg, embed_dim=4).eval()
    logits = torch.full((1, 8, 2, 2), -1e4)
    logits[:, 3] = 1e4
    assert torch.allclose(probe.head.out(logits), torch.full((1, 2, 2), 8.0))  # centres 1, 2, 4, 8, ... (log-spaced)


def test_wrong_number_of_feature_maps_and_bad_config():
    probe = DepthProbe(DepthHeadConfig(kind="linear4", num_bins=4), embed_dim=8)
    with pytest.raises(ValueError, match="takes 4 feature maps, got 1"):
        probe([torch.randn(1, 8, 2, 2)], (4, 4))
    with pytest.raises(ValueError, match="head kind"):
        DepthHeadConfig(kind="mlp")
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        DepthHeadConfig(min_depth=2.0, max_depth=1.0)


def test_probe_layers_are_quarters_of_depth():
    assert probe_layers(12) == [2, 5, 8, 11]
    assert probe_layers(4) == [0, 1, 2, 3]
    assert probe_layers(24) == [5, 11, 17, 23]
