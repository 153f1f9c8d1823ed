"""The world model's latent cache: equal to on-the-fly encoding, windows aligned, rebuilt when stale."""
import pytest
import torch
from safetensors import safe_open

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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_share_the_episodes_and_build_the_same_cache(tmp_path, push_data, epd_ckpt):
    """2 gloo ranks on the CPU: each encodes its own share (recorded in each file's metadata), an
    existing episode file is kept (resume), and the cache equals the single-process one exactly."""
    import json
    import shutil

    import torch.multiprocessing as mp

    from ivnext_world.launch.distributed import DEFAULT_TIMEOUT_MIN
    from ivnext_world.world_model.latent_cache import encoded_by, episode_path

    from ._cache_worker import build_on_rank

    episodes = [0, 1, 2, 3]
    epd, _ = load_epd(epd_ckpt)
    weights = resolve_checkpoint(epd_ckpt) / "model.safetensors"
    single = build_latent_cache(epd.encoder, weights, str(push_data), episodes, tmp_path / "single", 56, chunk_frames=5)

    # An interrupted earlier build left episode 2 complete and a partial temporary file.
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(single / "meta.json", shared / "meta.json")
    shutil.copy(episode_path(single, 2), episode_path(shared, 2))
    kept = episode_path(shared, 2).stat().st_mtime_ns
    (shared / "episode_000001.tmp").write_bytes(b"partial")

    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=build_on_rank, args=(r, 2, port, str(epd_ckpt), str(push_data), episodes, str(shared),
                                                    str(outs[r]))) for r in range(2)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=240)
    finally:
        for p in procs:  # a hung rank must not outlive the test
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0, 0]

    reports = [json.loads(o.read_text()) for o in outs]
    assert [r["rank"] for r in reports] == [0, 1] and all(r["backend"] == "gloo" for r in reports)
    assert all(r["timeout_s"] == DEFAULT_TIMEOUT_MIN * 60 for r in reports)  # not NCCL's 10 minutes
    assert episode_path(shared, 2).stat().st_mtime_ns == kept  # resumed: not encoded again
    assert not (shared / "episode_000001.tmp").exists()
    by_rank = {r: {ep for ep in episodes if ep != 2 and encoded_by(shared, ep)["rank"] == str(r)} for r in (0, 1)}
    assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1], by_rank  # both worked, on disjoint episodes
    assert by_rank[0] | by_rank[1] == {0, 1, 3}

    for ep in episodes:  # the same latents, bit for bit
        with safe_open(str(episode_path(shared, ep)), "pt") as a, safe_open(str(episode_path(single, ep)), "pt") as b:
            assert torch.equal(a.get_tensor("latents"), b.get_tensor("latents"))
    ds_single = LatentWindowDataset(single, str(push_data), episodes, window=4, stride=2)
    ds_shared = LatentWindowDataset(shared, str(push_data), episodes, window=4, stride=2)
    assert len(ds_single) == len(ds_shared) > 4
    for i in range(len(ds_single)):
        x, y = ds_single[i], ds_shared[i]
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
