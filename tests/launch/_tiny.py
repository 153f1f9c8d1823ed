"""Tiny jobs and data for the launcher tests (CPU, seconds).

``tiny_pretrain_overrides`` is a tiny EPD model in command-line form (the tiny encoder preset: new keys
in ``model.encoder_kwargs`` cannot be given as overrides, the schema's struct mode rejects them);
``TinyConfig``/``train_tiny`` is a linear model trained through the same Trainer/DDP path, returning
a digest of its final weights on every rank so a test can compare ranks. Both are registered with
cloudpickle *by value*: SLURM job processes cannot import the tests package.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional
from pathlib import Path

import numpy as np
import torch

from ivnext_world.train import LoopConfig, Trainer

TINY_MODEL = [
    "model.img_size=56", "model.num_frames=4", "model.drop_path=0.1",
    "model.predictor_dim=48", "model.predictor_depth=1", "model.predictor_heads=2",
    "model.decoder_width=64", "model.decoder_depth=2", "model.align_layers=2",
    "teacher.model=vit_tiny_patch16_224", "teacher.num_layers=2", "teacher.allow_random=true",
]


def tiny_pretrain_overrides(manifest: Path, out: Path | None, steps: int = 6, ckpt_every: int = 3, **loop) -> list[str]:
    """Stage-1 overrides for a tiny model on ``manifest``; ``out=None`` leaves the job folder to a sweep."""
    loop = {"steps": steps, "batch_size": 2, "num_workers": 0, "warmup_steps": 2, "ckpt_every": ckpt_every,
            "log_every": 1, "base_lr": 0.05, **loop}
    return ["stage=1", f"data.source={manifest}", "data.stride=2", *([f"out={out}"] if out else []), *TINY_MODEL,
            *(f"loop.{k}={v}" for k, v in loop.items())]


def write_clips(root: Path, n: int = 6) -> Path:
    """``n`` H.264 clips of a moving bright square on a gradient and their CSV manifest (also the
    pretraining tests' ``video_manifest``)."""
    from ivnext_world.data.video_io import encode_mp4

    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:64, 0:64]
    rows = []
    for i in range(n):
        frames = np.zeros((16, 64, 64, 3), np.uint8)
        frames[..., 0] = (xx * 3) % 256
        frames[..., 1] = (yy * 3 + 40 * i) % 256
        for t in range(16):
            y, x = (4 + 2 * t + 5 * i) % 48, (3 * t + 7 * i) % 48
            frames[t, y:y + 14, x:x + 14] = 255
        encode_mp4(root / f"clip{i}.mp4", frames, fps=10)
        rows.append(f"clip{i}.mp4,{i % 2}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv"


@dataclass
class TinyConfig:
    out: str = "outputs/tiny"
    stop_after: Optional[int] = None  # fit(stop_after=...): an interrupted run, for resume tests
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=8, batch_size=4, num_workers=0, warmup_steps=1,
                                                                 ckpt_every=4, base_lr=0.5, log_every=1))


class _Points(torch.utils.data.Dataset):
    def __init__(self, n: int = 64):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)  # (N, 8)
        self.y = self.x @ torch.randn(8, 2, generator=g)  # (N, 2)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _mse(model, batch, gen):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y), {}


class TinyNet(torch.nn.Module):
    """Blocks in a ModuleList plus a root-level head, and no forward: objectives call the parts, like
    the pretraining objectives do (which is what DDP/FSDP must cope with)."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 16)])
        self.head = torch.nn.Linear(16, 2)


def _parts_mse(model, batch, gen):
    x, y = batch  # (B, 8), (B, 2)
    return torch.nn.functional.mse_loss(model.head(torch.tanh(model.blocks[0](x))), y), {}


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        v = v.full_tensor() if hasattr(v, "full_tensor") else v  # FSDP: a DTensor shard -> the whole tensor
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_tiny(cfg: TinyConfig) -> dict:
    """A small MLP regression through Trainer; every rank reports its world size and weight digest."""
    import torch.distributed as dist

    torch.manual_seed(cfg.loop.seed)
    model = TinyNet()  # (B, 8) -> (B, 2)
    trainer = Trainer(model, _parts_mse, _Points(), cfg.loop, cfg.out, device="cpu")
    history = trainer.fit(stop_after=cfg.stop_after)
    return {"world_size": dist.get_world_size() if dist.is_initialized() else 1, "steps": trainer.step,
            "digest": digest(model), "final_loss": history[-1]["loss"]}
