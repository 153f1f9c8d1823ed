"""Tiny labelled videos and settings for the classification-probe tests (real mp4 files, CPU, seconds)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ivnext_world.data import encode_mp4
from ivnext_world.probes.classify import ClassifyConfig
from ivnext_world.pretrain import EPDConfig
from ivnext_world.train import LoopConfig

CLASSES = ("left", "right")
# 32 px, 16 px patches, 2-frame tubelets, 4 frames: 2 x 2 x 2 = 8 tokens of width 16.
TINY_ENCODER = EPDConfig(img_size=32, num_frames=4, patch_size=16, tubelet_size=2, decoder="none",
                         encoder_kwargs={"embed_dim": 16, "depth": 1, "num_heads": 2, "pool_num_heads": 2})


def clip(label: int, seed: int, t: int = 12, h: int = 32, w: int = 32) -> np.ndarray:
    """``(t, h, w, 3)`` uint8: a bright square sliding left (0) or right (1) from a random start."""
    rng = np.random.default_rng(seed)
    frames = np.full((t, h, w, 3), 30, np.uint8)
    x0, y = int(rng.integers(4, w - 12)), int(rng.integers(2, h - 10))
    for i in range(t):
        x = int(np.clip(x0 + (1 if label else -1) * i, 0, w - 8))
        frames[i, y:y + 8, x:x + 8] = 220
    return frames


def make_videos(root: Path, per_class: dict[str, int] | None = None, size: tuple[int, int] = (32, 32), t: int = 12) -> Path:
    """``root/{train,val,test}.csv`` (``path,label`` with class names) + ``classes.txt`` + the mp4 files."""
    root.mkdir(parents=True, exist_ok=True)
    per_class = per_class or {"train": 4, "val": 2, "test": 2}
    seed = 0
    for split, n in per_class.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["path", "label"])
            for i in range(n * len(CLASSES)):
                label = i % len(CLASSES)
                name = f"{split}_{i:03d}.mp4"
                encode_mp4(root / name, clip(label, seed, t, *size), fps=10)
                seed += 1
                wr.writerow([name, CLASSES[label]])
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    return root


def tiny_cfg(data: Path, out: Path, **loop) -> ClassifyConfig:
    cfg = ClassifyConfig(backbone="random", random_model=TINY_ENCODER, out=str(out))
    d = cfg.data
    d.train, d.val, d.test, d.classes = (str(data / "train.csv"), str(data / "val.csv"), str(data / "test.csv"),
                                         str(data / "classes.txt"))
    d.num_frames, d.frame_step, d.resolution, d.eval_clips, d.eval_crops, d.train_views = 4, 2, 32, 2, 1, 1
    cfg.heads.kinds, cfg.heads.lrs, cfg.heads.weight_decays, cfg.heads.depth = ["linear", "pooler", "attentive"], [3e-3], [0.01], 2
    cfg.eval_batch_size = 4
    cfg.loop = LoopConfig(**{**dict(steps=4, batch_size=4, num_workers=0, warmup_steps=0, min_lr_ratio=0.0, clip_grad=0.0,
                                    ckpt_every=2, log_every=1), **loop})
    return cfg
