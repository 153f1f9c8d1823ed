"""Train a depth probe: a head on a frozen encoder, with the project's training loop.

The head (:class:`DepthProbe`) is the trained, checkpointed model; the frozen encoder lives in the
objective (as in world-model training), so checkpoints hold only the head plus the record that
rebuilds the encoder. Loss: Probe3D's ``10 x SILog(0.85) + 0.5 x multi-scale gradient`` on the
rendered metric depth of every frame; AdamW with warmup + cosine via :class:`~ivnext_world.train.Trainer`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import torch

from ...pretrain.epd import EPDConfig
from ...train import LoopConfig, Trainer
from ...train.checkpoint import load_weights
from .encoders import build_features, features_from_record
from .heads import DepthHeadConfig, DepthProbe
from .losses import Probe3DDepthLoss

log = logging.getLogger(__name__)


@dataclass
class DepthDataConfig:
    source: str = "outputs/data/push"  # LeRobot folder with depth (the built-in envs write it)
    train_episodes: Optional[List[int]] = None  # None: all but the last held_out fraction
    test_episodes: Optional[List[int]] = None  # None: the last held_out fraction
    held_out: float = 0.25
    camera_key: Optional[str] = None  # None: the dataset's first camera
    window: int = 4  # frames decoded per item (one video seek per item); a batch is batch_size x window frames
    stride: int = 4  # rows between windows (= window: every frame once per epoch)
    frame_skip: int = 1
    decoder: str = "auto"  # auto (decord, per-file fallback to PyAV/torchcodec) | decord | pyav | torchcodec


@dataclass
class DepthProbeConfig:
    # "random" | pretraining run/checkpoint folder | official:<file> | vjepa2:<folder> | timm:<name>[:<file>]
    # | hf:<folder> (ivnext_world.backbones)
    encoder: str = "random"
    encoder_img_size: Optional[int] = None  # frame side for the backbone; None: its own
    random_model: EPDConfig = field(default_factory=lambda: EPDConfig(decoder="none"))  # architecture of "random"
    random_seed: int = 0
    head: DepthHeadConfig = field(default_factory=DepthHeadConfig)
    data: DepthDataConfig = field(default_factory=DepthDataConfig)
    w_silog: float = 10.0  # Probe3D
    w_grad: float = 0.5  # Probe3D
    silog_lambda: float = 0.85
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        steps=300, batch_size=4, num_workers=1, base_lr=0.128, warmup_steps=20, weight_decay=1e-4,
        ckpt_every=100, log_every=10))  # lr = 0.128 * 4 / 256 = 2e-3 (short CPU runs; Probe3D: 5e-4 for 10 epochs)
    out: str = "outputs/depth_probe"


def split_episodes(episodes: list[int], held_out: float) -> tuple[list[int], list[int]]:
    n_test = max(1, int(round(len(episodes) * held_out)))
    if len(episodes) - n_test < 1:
        raise ValueError(f"{len(episodes)} episodes cannot be split with held_out={held_out}")
    return episodes[:-n_test], episodes[-n_test:]


def resolve_split(data: DepthDataConfig) -> tuple[list[int], list[int]]:
    from ...data import LeRobotDataset

    eps = LeRobotDataset(data.source).episode_indices
    train, test = split_episodes(eps, data.held_out)
    train = list(data.train_episodes) if data.train_episodes is not None else train
    test = list(data.test_episodes) if data.test_episodes is not None else test
    if set(train) & set(test):
        raise ValueError(f"train and test episodes overlap ({sorted(set(train) & set(test))}): the probe would not be held out")
    return train, test


def depth_dataset(data: DepthDataConfig, episodes: list[int], window: int | None = None, stride: int | None = None):
    from ...data import TrajectoryDataset

    ds = TrajectoryDataset(data.source, window=window or data.window, stride=stride or data.stride,
                           frame_skip=data.frame_skip, camera_key=data.camera_key, episodes=episodes, on_error="raise",
                           decoder=data.decoder)
    if not ds.has_depth:
        raise ValueError(f"{data.source} stores no depth for camera {ds.camera_key!r}: nothing to probe against")
    return ds


def collate_frames(items: list[dict]) -> dict:
    """Windows -> one batch of frames: ``frames (B*T, 3, H, W)``, ``depth (B*T, H, W)``, ``intrinsics (B*T, 3, 3)``."""
    out = {"frames": torch.cat([it["frames"] for it in items]), "depth": torch.cat([it["depth"] for it in items])}
    if all("intrinsics" in it for it in items):
        out["intrinsics"] = torch.cat([it["intrinsics"] for it in items])
    return out


class DepthProbeObjective:
    """``objective(probe, batch, generator) -> (loss, metrics)``; holds the frozen feature extractor."""

    def __init__(self, features, loss: Probe3DDepthLoss):
        self.features, self.loss = features, loss

    def __call__(self, model: DepthProbe, batch: dict, generator: torch.Generator):
        model = getattr(model, "module", model)
        feats = self.features(batch["frames"])[-model.cfg.num_inputs:]  # [(N, D, h, w)]
        pred = model(feats, tuple(batch["depth"].shape[-2:]))  # (N, H, W)
        return self.loss(pred, batch["depth"].float())


def build_probe(cfg: DepthProbeConfig):
    """``(probe, features, encoder_record)`` for a config (probe freshly initialised)."""
    features, record = build_features(cfg.encoder, asdict(cfg.random_model), cfg.random_seed, cfg.encoder_img_size)
    torch.manual_seed(cfg.loop.seed)
    return DepthProbe(cfg.head, features.embed_dim), features, record


def train_depth_probe(cfg: DepthProbeConfig, features=None, record: dict | None = None) -> dict:
    """Train (or resume) a probe; returns a summary with the checkpoint path.

    ``features``/``record``: an already built frozen extractor (the comparison reuses one encoder
    for several heads); default: built from ``cfg.encoder``.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if features is None:
        probe, features, record = build_probe(cfg)
    else:
        torch.manual_seed(cfg.loop.seed)
        probe = DepthProbe(cfg.head, features.embed_dim)
    train_eps, test_eps = resolve_split(cfg.data)
    dataset = depth_dataset(cfg.data, train_eps)
    loss = Probe3DDepthLoss(cfg.w_silog, cfg.w_grad, cfg.silog_lambda, cfg.head.min_depth, cfg.head.max_depth)
    extra = {"depth_probe": {
        **probe.config_dict(), "encoder": record, "img_size": features.img_size, "layers": list(features.layers),
        "train_episodes": train_eps, "test_episodes": test_eps, "train_config": asdict(cfg),
    }}
    trainer = Trainer(probe, DepthProbeObjective(features, loss), dataset, cfg.loop, out,
                      collate_fn=collate_frames, extra_state=extra)
    history = trainer.fit()
    summary = {
        **trainer.summary(history),
        "encoder": record["spec"],
        "head": cfg.head.kind,
        "train_episodes": train_eps,
        "test_episodes": test_eps,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_depth_probe(path: str | Path, device: str | torch.device = "cpu"):
    """A probe run or checkpoint folder -> ``(probe, features, info)`` in eval mode, encoder rebuilt."""
    from ...pretrain.run import resolve_checkpoint

    ckpt = resolve_checkpoint(path)
    extra = json.loads((ckpt / "state.json").read_text())["extra"]
    if "depth_probe" not in extra:
        raise ValueError(f"{ckpt} is not a depth-probe checkpoint (no 'depth_probe' record)")
    info = extra["depth_probe"]
    probe = DepthProbe(DepthHeadConfig(**info["head"]), info["embed_dim"])
    load_weights(probe, ckpt / "model.safetensors")
    features = features_from_record(info["encoder"])
    features.layers = info["layers"]
    return probe.to(device).eval(), features, {**info, "checkpoint": str(ckpt)}
