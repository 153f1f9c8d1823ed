"""Depth of imagined futures: the last-layer path, per-horizon errors, pictures, encoder check."""
import numpy as np
import pytest
import torch

from ivnext_world.data import TrajectoryDataset
from ivnext_world.pretrain.run import load_epd
from ivnext_world.probes.depth import imagined_depth, load_depth_probe
from ivnext_world.probes.depth.imagine import latents_to_depth
from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor, NormStats, WorldModel

from ._helpers import save_tiny_epd


def tiny_world_model(epd_ckpt) -> WorldModel:
    epd, _ = load_epd(epd_ckpt)
    torch.manual_seed(0)
    pred = ActionConditionedPredictor(ACPredictorConfig(enc_dim=48, tokens_per_frame=20, action_dim=2, proprio_dim=3,
                                                        embed_dim=32, depth=1, num_heads=2, max_frames=16))
    stats = NormStats(action_mean=[0.0, 0.0], action_std=[1.0, 1.0], proprio_mean=[0.0] * 3, proprio_std=[1.0] * 3)
    return WorldModel(epd, pred, stats)


def test_world_model_latents_give_the_probe_its_own_features(depth_data, tiny_epd, tiny_probe):
    probe, features, _ = load_depth_probe(tiny_probe)
    wm = tiny_world_model(tiny_epd)
    frames = TrajectoryDataset(depth_data, window=3, episodes=[2])[0]["frames"]  # (3, 3, 56, 56)
    via_wm = latents_to_depth(probe, wm.encode(frames[None]), features.grid, wm.num_prefix_tokens, (56, 56))[0]
    with torch.no_grad():
        direct = probe(features(frames)[-1:], (56, 56))
    assert torch.allclose(via_wm, direct, atol=1e-4)


@pytest.mark.slow
def test_imagined_depth_per_horizon_and_pictures(depth_data, tiny_epd, tiny_probe, tmp_path, no_o3d_render):
    probe, features, _ = load_depth_probe(tiny_probe)
    res = imagined_depth(probe, features, tiny_world_model(tiny_epd), str(depth_data), [2], tmp_path, context=1, horizon=3)
    assert res["horizons"] == [1, 2, 3] and res["windows"] == 2  # 8 frames -> 2 windows of 4
    assert res["head_input"] == "last layer"
    for m in ("imagined", "encoded", "copy_last"):
        for k in ("abs_rel", "d1", "chamfer"):
            v = res["methods"][m][k]
            assert len(v) == 3 and np.all(np.isfinite(v)), (m, k)
    # horizon 1 of copy_last and encoded differ (the box moves), both are real numbers of a real probe
    assert res["methods"]["copy_last"]["abs_rel"] != res["methods"]["encoded"]["abs_rel"]
    for key in ("curve", "sheet_0", "cloud_0"):
        assert (tmp_path / res["files"][key].split("/")[-1]).stat().st_size > 1000
    assert (tmp_path / "imagined_cloud_00.ply").is_file()


def test_probe_of_another_encoder_is_refused(depth_data, tiny_probe, tmp_path):
    probe, features, _ = load_depth_probe(tiny_probe)
    other = tiny_world_model(save_tiny_epd(tmp_path / "other", seed=1))
    with pytest.raises(ValueError, match="different encoder"):
        imagined_depth(probe, features, other, str(depth_data), [2], None, horizon=2)
