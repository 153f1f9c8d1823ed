"""Held-out evaluation end to end on tiny push data: files, finite errors, the copy-last baseline."""
import json

import pytest
import torch

from ivnext_world.train import LoopConfig
from ivnext_world.world_model import WorldModel, WorldModelTrainConfig, train_world_model
from ivnext_world.world_model.evaluate import EvalConfig, copy_last, horizon_errors
from ivnext_world.world_model.masked_rollout import normalized_patch_latents
from ivnext_world.world_model.train import WMDataConfig, WMPredictorSize


@pytest.fixture(scope="module")
def wm_run(tmp_path_factory, push_data, epd_ckpt):
    out = tmp_path_factory.mktemp("wm_eval") / "wm"
    train_world_model(WorldModelTrainConfig(
        encoder=str(epd_ckpt), data=WMDataConfig(source=str(push_data), episodes=[0, 1, 2], window=4),
        predictor=WMPredictorSize(embed_dim=32, depth=1, num_heads=2, max_frames=16),
        loop=LoopConfig(steps=2, batch_size=4, num_workers=0, warmup_steps=1, ckpt_every=2, log_every=1),
        out=str(out)))
    return out


def test_copy_last_and_horizon_zero():
    ctx = torch.randn(2, 3, 20, 8)
    base = copy_last(ctx, 4)
    assert base.shape == (2, 4, 20, 8) and torch.equal(base[:, 2], ctx[:, -1])
    # "Horizon 0" (the last context frame itself): copy-last is exact.
    z = normalized_patch_latents(ctx[:, -1:], 4)
    err = horizon_errors(normalized_patch_latents(copy_last(ctx, 1), 4), z)
    assert err["l1"].item() == 0 and err["cosine"].item() == pytest.approx(2.0)  # summed over the batch of 2


def test_evaluation_end_to_end(tmp_path, wm_run, push_data, epd_ckpt):
    from ivnext_world.cli.world_model_eval import main
    from ivnext_world.data import TrajectoryDataset

    out = tmp_path / "eval"
    returned = main(["--world-model", str(wm_run), "--data", str(push_data), "--episodes", "3", "--horizon", "4",
                   "--epd", str(epd_ckpt), "--videos", "1", "--decode-steps", "2", "--out", str(out)])
    assert returned is None  # the console script does sys.exit(main()): anything else exits 1
    assert (out / "errors.json").exists() and (out / "error_vs_horizon.png").stat().st_size > 0
    saved = json.loads((out / "errors.json").read_text())
    assert saved["videos"] == ["rollout_00.gif"] and (out / "rollout_00.gif").stat().st_size > 0
    assert saved["horizons"] == [1, 2, 3, 4] and saved["episodes"] == [3]
    assert len(saved["action_sensitivity"]) == 4 and all(0 <= v < 1e3 for v in saved["action_sensitivity"])
    m = saved["methods"]
    for name in ("world_model", "copy_last"):
        assert all(v is not None and v == v and abs(v) < 1e3 for k in ("l1", "cosine", "l1_raw") for v in m[name][k])
    # The tiny EPD clip holds 4 frames: after 1 context frame the masked predictor reaches horizon 3 only.
    assert m["masked_predictor"]["l1"][3] is None and all(v is not None for v in m["masked_predictor"]["l1"][:3])

    # Copy-last, recomputed by hand: the frame before horizon 1 is the last context frame.
    wm = WorldModel.load(wm_run)
    ds = TrajectoryDataset(push_data, window=5, stride=5, episodes=[3])
    z = torch.cat([wm.encode(ds[i]["frames"][None]) for i in range(len(ds))])  # (W, 5, n, D)
    zn = normalized_patch_latents(z, wm.num_prefix_tokens)
    expected = (zn[:, 1:] - zn[:, :1]).abs().mean(dim=(0, 2, 3))  # (4,)
    assert saved["num_windows"] == len(ds)
    assert torch.allclose(torch.tensor(m["copy_last"]["l1"]), expected, atol=1e-5)
    assert torch.allclose(torch.tensor(m["copy_last"]["l1_raw"]), (z[:, 1:] - z[:, :1]).abs().mean(dim=(0, 2, 3)), atol=1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="video_format"):
        EvalConfig(world_model="x", data="y", video_format="avi")
    with pytest.raises(ValueError, match="horizon"):
        EvalConfig(world_model="x", data="y", horizon=0)
