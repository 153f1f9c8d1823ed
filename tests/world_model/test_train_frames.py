"""World-model training on decoded frames (``cache_latents=False``): the windows travel as uint8 and the
Trainer normalises them once, on the device, so the targets are those of the cached-latent path (whose
cache the float transform feeds, as WorldModel.encode does)."""
import json

import pytest

from ivnext_world.world_model import train_world_model

from .test_train import config


def test_uint8_frame_windows_train_like_the_latent_cache(tmp_path, push_data, epd_ckpt):
    losses = {}
    for cache in (True, False):
        cfg = config(tmp_path, push_data, epd_ckpt, out=f"cache_{cache}")
        cfg.loop.steps, cfg.loop.ckpt_every, cfg.loop.log_every = 3, 3, 1
        cfg.data.cache_latents = cache
        train_world_model(cfg)
        rows = [json.loads(line) for line in (tmp_path / f"cache_{cache}" / "metrics.jsonl").read_text().splitlines()]
        losses[cache] = [r["loss"] for r in rows]
    # Same windows, same initial predictor: equal up to float summation order (encoder batch shapes).
    assert losses[False] == pytest.approx(losses[True], rel=1e-4)
