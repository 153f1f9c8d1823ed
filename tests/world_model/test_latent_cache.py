"""The world model's latent cache: equal to on-the-fly encoding, windows aligned, rebuilt when stale."""
import torch

from ivnext_world.data import TrajectoryDataset, build_video_transform
from ivnext_world.pretrain.run import load_epd, resolve_checkpoint
from ivnext_world.world_model.latent_cache import LatentWindowDataset, build_latent_cache
from ivnext_world.world_model.latents import encode_video


def test_cached_windows_equal_on_the_fly_encoding(tmp_path, push_data, epd_ckpt):
    epd, _ = load_epd(epd_ckpt)
    weights = resolve_checkpoint(epd_ckpt) / "model.safetensors"
    cache = build_latent_cache(epd.encoder, weights, str(push_data), [1, 2], tmp_path / "lat", 56, chunk_frames=5)
    ds = LatentWindowDataset(cache, str(push_data), [1, 2], window=4, stride=3, frame_skip=2)
    ref = TrajectoryDataset(push_data, window=4, stride=3, frame_skip=2, episodes=[1, 2], chunk_actions=True,
                            transform=build_video_transform(False, 56, crop_pct=1.0, flip=False))
    assert len(ds) == len(ref) > 2
    for i in (0, len(ds) - 1):
        got, want = ds[i], ref[i]
        with torch.no_grad():
            z = encode_video(epd.encoder.eval(), want["frames"][None])[0]
        assert got["latents"].shape == z.shape
        torch.testing.assert_close(got["latents"], z, atol=1e-5, rtol=1e-5)
        assert torch.equal(got["actions"], want["actions"]) and torch.equal(got["proprio"], want["proprio"])

    # Same settings: nothing is re-encoded. Other settings (pooling): the stale files go.
    stamp = (cache / "episode_000001.safetensors").stat().st_mtime_ns
    build_latent_cache(epd.encoder, weights, str(push_data), [1, 2], cache, 56)
    assert (cache / "episode_000001.safetensors").stat().st_mtime_ns == stamp
    build_latent_cache(epd.encoder, weights, str(push_data), [1], cache, 56, pool=2)
    assert not (cache / "episode_000002.safetensors").exists()
    assert LatentWindowDataset(cache, str(push_data), [1], window=2)[0]["latents"].shape[1] == 4 + 2 * 2
