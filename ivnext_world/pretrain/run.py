"""Run one pretraining stage from a typed config: data, model, teacher, objective, training loop.

``run_pretrain(cfg)`` is what ``ivnext-pretrain`` and the README's main job call; the cluster
launcher will call the same function on every rank.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import List, Optional

import torch

from ..train import LoopConfig, Trainer, latest_checkpoint
from ..train.checkpoint import load_weights
from .epd import EPDConfig, EPDModel, build_epd
from .stage1 import Stage1Loss, Stage1Objective
from .stage2 import Stage2Objective, stage2_from_stage1

log = logging.getLogger(__name__)

NO_TEACHER_NOTE = (
    "No image-teacher weights given (teacher.checkpoint): Stage 1 trains reconstruction only, through the "
    "diffusion decoder with {mask} masks; aligning to a random network would teach the encoder noise. Name a "
    "local teacher checkpoint (e.g. SigLIP2) for the paper's recipe; teacher.allow_random=true aligns to a "
    "random teacher (tests only)."
)

RANDOM_TEACHER_WARNING = (
    "The image teacher has RANDOM weights (no teacher.checkpoint given): alignment targets and "
    "attention-guided masks are not semantic. Name a local timm checkpoint for real results."
)


@dataclass
class TeacherConfig:
    # a timm ViT, e.g. vit_base_patch16_siglip_224, or "auto": the model the checkpoint folder holds
    model: str = "vit_tiny_patch16_224"
    # local timm weights file, timm / HF-cache folder, or transformers folder; None = random, loudly labelled
    checkpoint: Optional[str] = None
    num_layers: int = 6  # hidden states aligned with the student's last blocks (paper: 6)
    # Without a checkpoint, Stage 1 does not align to a random network (that costs the encoder what it
    # knows of depth and state): it trains reconstruction only, through the diffusion decoder, with
    # random-tube or motion-aware masks. True keeps the alignment to a random teacher (tests, ablations).
    allow_random: bool = False


@dataclass
class ClipDataConfig:
    source: str = "outputs/data/push"  # LeRobot folder (v2.1/v3.0) or a CSV/JSONL manifest of videos
    sampling: str = "dense"
    stride: float = 2.0
    target_fps: Optional[float] = None
    episodes: Optional[List[int]] = None  # LeRobot sources: restrict to these (e.g. a train split)
    flip: bool = False  # left/right matters for robot video
    on_error: str = "skip"
    decoder: str = "auto"  # auto (decord, per-file fallback to PyAV/torchcodec) | decord | pyav | torchcodec


@dataclass
class PretrainConfig:
    stage: int = 1
    model: EPDConfig = field(default_factory=EPDConfig)
    loss: Stage1Loss = field(default_factory=Stage1Loss)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: ClipDataConfig = field(default_factory=ClipDataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    init_from: Optional[str] = None  # Stage 2: a Stage-1 run folder or checkpoint folder
    out: str = "outputs/pretrain/stage${stage}"


def build_clip_dataset(data: ClipDataConfig, model: EPDConfig, train: bool = True):
    from ..data import VideoClipDataset, build_video_transform

    return VideoClipDataset(
        data.source, num_frames=model.num_frames, sampling=data.sampling, stride=data.stride,
        target_fps=data.target_fps, train=train, episodes=data.episodes, on_error=data.on_error, decoder=data.decoder,
        # uint8 through the workers; the Trainer normalises on the device (a quarter of float32's bytes).
        transform=build_video_transform(train, model.img_size, flip=data.flip, output="uint8"),
    )


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder (``step_*``), or the newest one under a run folder or its ``checkpoints/``."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    for d in (path / "checkpoints", path):
        found = latest_checkpoint(d)
        if found is not None:
            return found
    raise FileNotFoundError(f"no complete checkpoint (step_*/state.json) in {path}")


def load_epd(path: str | Path) -> tuple[EPDModel, dict]:
    """Rebuild a pretrained model from a checkpoint or run folder; returns (model, stored extra state)."""
    ckpt = resolve_checkpoint(path)
    extra = json.loads((ckpt / "state.json").read_text())["extra"]
    if "model" not in extra:
        raise ValueError(f"{ckpt} holds no EPD model config: not an ivnext_world pretraining checkpoint")
    model = build_epd(extra["model"])
    load_weights(model, ckpt / "model.safetensors")
    return model, extra


def stage1_loss(cfg: PretrainConfig) -> Stage1Loss:
    """The Stage-1 loss a job trains: ``cfg.loss``, or reconstruction only when no teacher weights are
    named (and ``teacher.allow_random`` is off)."""
    if not (cfg.loss.w_middle or cfg.loss.w_final) or cfg.teacher.checkpoint is not None or cfg.teacher.allow_random:
        return cfg.loss
    if not cfg.loss.w_recon:
        raise ValueError("no teacher.checkpoint and loss.w_recon=0: Stage 1 would align to a random network; "
                         "give a teacher checkpoint, a reconstruction weight, or teacher.allow_random=true")
    return replace(cfg.loss, w_middle=0.0, w_final=0.0)


def run_pretrain(cfg: PretrainConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # The same seed on every rank: the model (and a random teacher) must be built identically; the
    # Trainer then re-seeds each rank's global RNG for its own drop path and dropout.
    torch.manual_seed(cfg.loop.seed)
    teacher_info: dict = {}
    if cfg.stage == 1:
        teacher = None
        loss = stage1_loss(cfg)  # the caller's config is left as given
        if loss is not cfg.loss:
            teacher_info = {"model": None, "checkpoint": None, "pretrained": None, "objective": "reconstruction only",
                            "note": NO_TEACHER_NOTE.format(mask=loss.resolved_mask(False))}
            log.warning(teacher_info["note"])
        if loss.w_middle or loss.w_final:
            from ..models import ImageTeacher

            teacher = ImageTeacher(cfg.teacher.model, cfg.teacher.checkpoint, num_layers=cfg.teacher.num_layers, img_size=cfg.model.img_size)
            teacher_info = {"model": cfg.teacher.model, "checkpoint": cfg.teacher.checkpoint, "pretrained": teacher.is_pretrained}
        mcfg = EPDConfig(**{**asdict(cfg.model), "teacher_dim": teacher.embed_dim if teacher else None, "latent_head": False})
        if loss.w_recon == 0:
            mcfg.decoder = "none"
        model = build_epd(mcfg)
        objective = Stage1Objective(loss, teacher)
    elif cfg.stage == 2:
        if cfg.init_from is None:
            raise ValueError("Stage 2 needs init_from=<Stage-1 run or checkpoint folder>")
        ckpt = resolve_checkpoint(cfg.init_from)
        stage1_extra = json.loads((ckpt / "state.json").read_text())["extra"]
        model, frozen = stage2_from_stage1(str(ckpt / "model.safetensors"), stage1_extra["model"], cfg.model.latent_head_kind)
        # The architecture comes from Stage 1; gradient checkpointing is this job's choice.
        model.set_grad_checkpointing(cfg.model.grad_checkpointing)
        objective = Stage2Objective(frozen)
        teacher_info = {"stage1_checkpoint": str(ckpt), "stage1_teacher": stage1_extra.get("teacher", {})}
    else:
        raise ValueError(f"stage must be 1 or 2, got {cfg.stage}")

    dataset = build_clip_dataset(cfg.data, model.cfg)
    trainer = Trainer(
        model, objective, dataset, cfg.loop, out,
        collate_fn=_collate_video,
        extra_state={"model": model.config_dict(), "stage": cfg.stage, "teacher": teacher_info},
    )
    history = trainer.fit()
    summary = {
        "stage": cfg.stage,
        **trainer.summary(history),
        "teacher": teacher_info,
        "nonfinite_steps": trainer.nonfinite,
        "data_failures": dict(dataset.failures),
    }
    random_teacher = teacher_info.get("pretrained") is False or teacher_info.get("stage1_teacher", {}).get("pretrained") is False
    if teacher_info.get("note"):
        summary["note"] = teacher_info["note"]
    if random_teacher:
        summary["warning"] = RANDOM_TEACHER_WARNING
        log.warning(RANDOM_TEACHER_WARNING)
    if trainer.is_main:  # every rank returns the summary; one writes it
        from ..utils.io import atomic_write_text
        from ..viz.plots import plot_curves

        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
        plot_curves(history, out / "loss_curve.png", title=f"Stage {cfg.stage} training loss", warning=summary.get("warning", ""))
    return summary


def _collate_video(items: list[dict]) -> dict:
    return {"video": torch.stack([it["video"] for it in items]), "index": torch.tensor([it["index"] for it in items])}
