"""Typed configuration of ``ivnext-classify`` (``configs/classify.yaml``; presets in ``configs/classify_preset/``).

Defaults are the CPU-scale setting used on the simulator's temporal benchmark (``cpu``). The presets
``vjepa2_ssv2`` and ``vjepa2_k400`` are V-JEPA 2's frozen evaluation (``configs/eval/vitl/{ssv2,k400}.yaml``:
16 frames 4 apart at 256 px, 2 x 3 resp. 8 x 3 clips x crops, attentive probe of 4 blocks with 16
heads, 5 learning rates x 4 weight decays, 20 epochs at batch 256); ``internvideo_next`` is the
paper's encoder input (16 frames at 224 px) with V-JEPA 2's SSv2 view counts (see the preset file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ...pretrain.epd import EPDConfig
from ...train import LoopConfig


def _tiny_encoder() -> EPDConfig:
    # A width-64, 4-block encoder on 64 px clips, 16 px patches, 2-frame tubelets: 64 tokens per
    # 8-frame clip, cheap enough for the whole evidence table on two CPU cores (the README's
    # pretraining commands build the same architecture).
    return EPDConfig(img_size=64, num_frames=8, patch_size=16, tubelet_size=2, decoder="none",
                     encoder_kwargs={"embed_dim": 64, "depth": 4, "num_heads": 4, "pool_num_heads": 4})


@dataclass
class ClassifyDataConfig:
    train: str = "outputs/temporal_bench/train.csv"  # manifest (.csv / .jsonl) or LeRobot folder
    val: Optional[str] = "outputs/temporal_bench/val.csv"  # picks the best head; None: picked on test (V-JEPA 2's report)
    test: Optional[str] = "outputs/temporal_bench/test.csv"
    classes: Optional[str] = "outputs/temporal_bench/classes.txt"  # one name per line; None: sorted training labels
    label_column: str = "label"  # LeRobot sources: per-episode label column ("task_index": task strings)
    camera_key: Optional[str] = None  # LeRobot sources: None = the first camera
    train_episodes: Optional[List[int]] = None  # LeRobot sources: episodes of each split
    val_episodes: Optional[List[int]] = None
    test_episodes: Optional[List[int]] = None
    num_frames: int = 8
    frame_step: int = 2
    resolution: int = 64
    eval_clips: int = 2  # temporal clips per video at evaluation
    eval_crops: int = 1  # spatial crops per clip (along the long side; square videos give identical crops)
    train_views: int = 2  # cached random views per training video (features=cache)
    train_scale: List[float] = field(default_factory=lambda: [0.6, 1.0])  # random-resized-crop area range
    flip: bool = False  # off: left/right is part of the label for robot motion
    short_clip: str = "pad"  # pad | error
    on_error: str = "skip"  # the loaders' bad-video policy: skip | raise
    max_failures: Optional[int] = 50  # per split: stop once more videos than this failed (None: no limit)
    max_failure_fraction: Optional[float] = 0.1  # per split: stop once this fraction failed (None: no limit)
    num_workers: int = 0  # decoding workers for feature extraction


@dataclass
class HeadGridConfig:
    kinds: List[str] = field(default_factory=lambda: ["linear", "pooler", "attentive"])
    # V-JEPA 2's grid tops out at 5e-3 for ~13k steps; in a few hundred CPU steps its attention heads
    # do not leave the uniform-attention start at 3e-3 (measured: loss flat at ln 8 for 300 steps)
    lrs: List[float] = field(default_factory=lambda: [1e-2, 3e-3])
    weight_decays: List[float] = field(default_factory=lambda: [0.01])
    depth: int = 4  # blocks of the attentive probe (the last is the cross-attention block)
    num_heads: Optional[int] = None  # attention heads of the probes; None: the backbone's
    mlp_ratio: float = 4.0
    average: str = "logits"  # how a video's views are combined: logits | softmax (V-JEPA 2)


@dataclass
class ClassifyConfig:
    # any ivnext_world.backbones spec (random | run folder | official: | vjepa2: | hf: | timm:<model>[:<file>]),
    # random:<preset> (= timm:<preset>, random init) or frame:<spec> (the single-frame baseline)
    backbone: str = "random"
    random_model: EPDConfig = field(default_factory=_tiny_encoder)  # architecture of "random"
    random_seed: int = 0
    # timm specs: extra timm.create_model arguments, e.g. {embed_dim: 64, depth: 4, num_heads: 4} for a
    # random-init image model as small as the video encoder it is compared with
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)
    temporal_embed: bool = True  # per-frame image backbones: add a sin-cos frame-index embedding
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    heads: HeadGridConfig = field(default_factory=HeadGridConfig)
    features: str = "cache"  # cache (extract tokens once) | online (backbone inside every step)
    cache_dtype: str = "float16"
    max_cache_gb: float = 4.0
    eval_batch_size: int = 16
    # Per-head lrs come from heads.lrs (absolute, not scaled by batch); base_lr and weight_decay here
    # are unused. clip_grad must stay 0 (a joint clip couples the heads). Cosine to 0, no warmup (V-JEPA 2).
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        steps=600, batch_size=16, num_workers=0, warmup_steps=0, min_lr_ratio=0.0, clip_grad=0.0,
        ckpt_every=100, log_every=10))
    out: str = "outputs/classify"
