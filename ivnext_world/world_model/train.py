"""Action-conditioned fine-tuning of the latent world model (V-JEPA 2-AC, arXiv 2506.09985, Sec. 3).

The frozen backbone (our pretrained encoder or any other, :mod:`ivnext_world.backbones`: ``encoder=``
a run folder, ``official:<file>``, ``vjepa2:<folder>``, ``timm:<arch>[:<file>]``, ``hf:<folder>``) turns
every frame of a trajectory window into target latents, each frame encoded on its own (a tubelet-2
backbone such as V-JEPA 2 sees the frame repeated, so one action still maps to one latent frame);
the trainable model is the :class:`ActionConditionedPredictor` (its token embeddings included).
Loss = ``w_teacher_forcing`` x teacher-forced loss (predict frame ``t+1`` from the true frames
``<= t``) + ``w_rollout`` x rollout loss (start from the first frame and feed the model's own
predictions back for ``rollout_steps`` steps, gradients through the whole rollout), with L1
(V-JEPA 2-AC), L2 or cosine distance. Data: any LeRobot-layout folder (the built-in envs' output).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..backbones import Backbone, is_backbone_spec, load_backbone
from ..backbones.video_vit import VideoViTBackbone
from ..pretrain.epd import cosine_loss
from ..pretrain.run import load_epd, resolve_checkpoint
from ..train import LoopConfig, Trainer
from ..utils.io import atomic_write_text
from .latents import NormStats, encode_video, tokens_per_frame
from .predictor import ACPredictorConfig, ActionConditionedPredictor

log = logging.getLogger(__name__)

LOSSES = ("l1", "l2", "cosine", "l1_unit")


@dataclass
class WMDataConfig:
    source: str = "outputs/data/push"  # LeRobot folder (v2.1 or v3.0) with actions and observation.state
    episodes: Optional[List[int]] = None  # training split; norm statistics come from these episodes only
    window: int = 8  # frames per training window: 1 context frame + up to window-1 targets
    stride: int = 1
    # One world-model step = frame_skip env steps; its action is the concatenation of those frame_skip
    # env actions (DINO-WM's frameskip, 5 there): a planning horizon H then looks H * frame_skip env
    # steps ahead. Planners and ImaginedEnv act in these chunks; PlanningAgent executes them step by step.
    frame_skip: int = 1
    camera_key: Optional[str] = None  # None: the dataset's first camera
    cache_latents: bool = True  # encode every frame once into <out>/latents (frozen encoder, no augmentation)
    decoder: str = "auto"  # auto (decord, per-file fallback to PyAV/torchcodec) | decord | pyav | torchcodec


@dataclass
class WMPredictorSize:
    embed_dim: int = 192
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 4.0
    max_frames: int = 32  # longest context + horizon the time embedding covers
    drop_path: float = 0.0
    # A shallow predictor trained from scratch: LayerScale 1e-5 (made for deep ViTs) keeps the
    # blocks near-identity for hundreds of steps; 0.1 lets the action tokens matter early.
    layer_scale: float = 0.1


@dataclass
class WorldModelTrainConfig:
    # The frozen backbone: a pretraining run/checkpoint (Stage 1 keeps decode() possible), or
    # official:<file> | vjepa2:<folder> | timm:<arch>[:<file>] | hf:<folder> (ivnext_world.backbones)
    encoder: str = "outputs/pretrain/stage1"
    encoder_img_size: Optional[int] = None  # frame side for the backbone; None: its own (DINO-WM: 224)
    data: WMDataConfig = field(default_factory=WMDataConfig)
    predictor: WMPredictorSize = field(default_factory=WMPredictorSize)
    action_conditioned: bool = True  # False: action-free predictor (no action/proprio tokens)
    use_proprio: bool = True  # proprio tokens (only with action_conditioned)
    # Predict the next proprio too (needs use_proprio): imagined frames carry it and planners can
    # score it against a goal state (DINO-WM's proprio term). Loss: MSE in normalised units. Applies
    # only where there are proprio tokens (ignored for an action-free model or use_proprio=false).
    predict_proprio: bool = True
    w_proprio: float = 1.0
    pool: int = 1  # average-pool patch tokens pool x pool (faster; latents then cannot be decoded)
    init_from_pretrained: bool = False  # copy the pretrained predictor's blocks (needs equal width and heads)
    # l1_unit: L1 of per-token unit vectors (patch tokens); the loss with which the model beat copy-last
    # on held-out push windows (README). l1 = V-JEPA 2-AC's; l2; cosine.
    loss: str = "l1_unit"
    rollout_steps: int = 2  # V-JEPA 2-AC: 2
    w_teacher_forcing: float = 1.0
    w_rollout: float = 1.0
    loop: LoopConfig = field(default_factory=LoopConfig)
    out: str = "outputs/world_model"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.rollout_steps < 0 or self.data.window < max(2, self.rollout_steps + 1):
            raise ValueError(
                f"data.window={self.data.window} must be >= 2 and >= rollout_steps + 1 = {self.rollout_steps + 1}"
            )
        if self.data.window - 1 > self.predictor.max_frames:
            raise ValueError(f"data.window - 1 = {self.data.window - 1} exceeds predictor.max_frames={self.predictor.max_frames}")


def latent_distance(pred: torch.Tensor, target: torch.Tensor, kind: str, skip_tokens: int = 0) -> torch.Tensor:
    """Mean distance between latents ``(..., D)``: l1, l2 (MSE), cosine (``2 - 2 cos``), or
    ``l1_unit``: the L1 norm of the difference of the per-token unit vectors (mean over the patch
    tokens; ``skip_tokens`` leading cls tokens are left out, as the evaluation leaves them out).

    ``l1_unit`` measures what the evaluation and the planners compare (directions of tokens, every
    token weighted alike, whatever its norm), and keeps L1's tolerance of the many tokens that do not
    change from one frame to the next; on the built-in push task it is the loss that beats copying
    the last latent (see the README).
    """
    if kind == "l1_unit":  # latents (..., n, D): the first skip_tokens (cls) tokens are left out
        pred, target = pred[..., skip_tokens:, :], target[..., skip_tokens:, :]
        return (F.normalize(pred.float(), dim=-1) - F.normalize(target.float(), dim=-1)).abs().sum(-1).mean()
    if kind == "l1":
        return F.l1_loss(pred.float(), target.float())
    if kind == "l2":
        return F.mse_loss(pred.float(), target.float())
    if kind == "cosine":
        return cosine_loss(pred, target)
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")


class WorldModelObjective:
    """``objective(predictor, batch, generator) -> (loss, metrics)``; holds the frozen backbone.

    ``batch``: ``frames (B, T, C, H, W)`` normalised the backbone's way (:meth:`Backbone.transform`)
    or cached ``latents (B, T, n, D)``; ``actions (B, T, A)`` and ``proprio
    (B, T, S)`` raw (normalised here with ``stats``).
    """

    def __init__(self, encoder: Backbone | nn.Module, stats: NormStats | None, loss: str = "l1", rollout_steps: int = 2,
                 w_teacher_forcing: float = 1.0, w_rollout: float = 1.0, pool: int = 1, w_proprio: float = 1.0):
        self.encoder = encoder.eval().requires_grad_(False)
        self.stats, self.loss, self.rollout_steps = stats, loss, rollout_steps
        self.w_tf, self.w_ro, self.pool, self.w_prop = w_teacher_forcing, w_rollout, pool, w_proprio
        self.skip = encoder.num_prefix_tokens

    def targets(self, batch: dict) -> torch.Tensor:
        """``(B, T, n, D)`` latents: cached ones, or the frozen encoder's on ``batch["frames"]``."""
        if "latents" in batch:
            return batch["latents"].float()
        frames = batch["frames"]
        self.encoder.to(frames.device).eval()
        with torch.no_grad():
            return encode_video(self.encoder, frames, self.pool).float()

    def __call__(self, model: ActionConditionedPredictor, batch, generator: torch.Generator):
        model = getattr(model, "module", model)  # DDP
        z = self.targets(batch)  # (B, T, n, D)
        a = self.stats.normalize_actions(batch["actions"]) if model.action_embed is not None else None
        s = self.stats.normalize_proprio(batch["proprio"]) if model.proprio_embed is not None else None

        def upto(x, k):
            return None if x is None else x[:, :k]

        metrics = {}
        loss = z.new_zeros(())
        predicts_proprio = model.proprio_head is not None
        if self.w_tf:
            pred, p_pred = model(z[:, :-1], upto(a, -1), upto(s, -1), return_proprio=True)  # frames 1..T-1
            metrics["loss_tf"] = latent_distance(pred, z[:, 1:], self.loss, self.skip)
            loss = loss + self.w_tf * metrics["loss_tf"]
            if predicts_proprio and self.w_prop:
                metrics["loss_proprio"] = F.mse_loss(p_pred.float(), s[:, 1:].float())
                loss = loss + self.w_prop * metrics["loss_proprio"]
        if self.w_ro and self.rollout_steps:
            seq, preds, s_seq = z[:, :1], [], None if s is None else s[:, :1]
            for k in range(1, self.rollout_steps + 1):
                # Imagined frames carry the predicted proprio (or hold the last one), as WorldModel.rollout does.
                out, p_out = model(seq, upto(a, k), s_seq, return_proprio=True)
                preds.append(out[:, -1:])  # (B, 1, n, D): frame k
                seq = torch.cat([seq, out[:, -1:]], dim=1)
                if s_seq is not None:
                    s_seq = torch.cat([s_seq, p_out[:, -1:] if predicts_proprio else s_seq[:, -1:]], dim=1)
            metrics["loss_rollout"] = latent_distance(torch.cat(preds, 1), z[:, 1:self.rollout_steps + 1], self.loss, self.skip)
            loss = loss + self.w_ro * metrics["loss_rollout"]
        if not metrics:
            raise ValueError("nothing to optimise: w_teacher_forcing and w_rollout (or rollout_steps) are 0")
        return loss, {k: v.detach() for k, v in metrics.items()}

    def freeze_unused(self, model: ActionConditionedPredictor) -> None:
        """Freeze the proprio head when no loss reaches it (the Trainer calls this before building the
        optimiser; DDP runs without ``find_unused_parameters``): it is trained by the proprio loss of
        teacher forcing, or through the proprio that a rollout of 2+ steps feeds back."""
        trained = (self.w_tf and self.w_prop) or (self.w_ro and self.rollout_steps >= 2)
        if model.proprio_head is not None and not trained:
            model.proprio_head.requires_grad_(False)


def build_predictor(cfg: WorldModelTrainConfig, encoder, img_size: int | None, stats: NormStats | None) -> ActionConditionedPredictor:
    """The predictor for ``encoder`` (a :class:`Backbone`, or a bare encoder at ``img_size``): its width and
    tokens per frame (any patch grid, with or without prefix tokens) size the input and output."""
    p = cfg.predictor
    pcfg = ACPredictorConfig(
        enc_dim=encoder.embed_dim, tokens_per_frame=tokens_per_frame(encoder, img_size, cfg.pool),
        action_dim=stats.action_dim if cfg.action_conditioned else None,
        proprio_dim=stats.proprio_dim if (cfg.action_conditioned and cfg.use_proprio) else None,
        embed_dim=p.embed_dim, depth=p.depth, num_heads=p.num_heads, mlp_ratio=p.mlp_ratio,
        max_frames=p.max_frames, drop_path=p.drop_path, layer_scale=p.layer_scale,
        predict_proprio=cfg.predict_proprio and cfg.action_conditioned and cfg.use_proprio,
    )
    return ActionConditionedPredictor(pcfg)


def train_world_model(cfg: WorldModelTrainConfig) -> dict:
    """Fine-tune an action-conditioned predictor on a frozen pretrained encoder; returns a summary."""
    from ..data import TrajectoryDataset

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.loop.seed)
    backbone, epd, ckpt = open_backbone(cfg)
    stats = NormStats.from_lerobot(cfg.data.source, cfg.data.episodes).chunked(cfg.data.frame_skip)
    if cfg.action_conditioned and cfg.use_proprio and stats.proprio_dim is None:
        raise ValueError(f"{cfg.data.source} has no observation.state column: set use_proprio=false")
    predictor = build_predictor(cfg, backbone, None, stats)
    if cfg.init_from_pretrained:
        if epd is None:
            raise ValueError(f"init_from_pretrained copies our pretrained predictor's blocks; {cfg.encoder!r} "
                             "is another backbone, with none: set init_from_pretrained=false")
        if (predictor.cfg.embed_dim, predictor.cfg.num_heads) != (epd.predictor.embed_dim, epd.cfg.predictor_heads):
            raise ValueError(
                f"init_from_pretrained needs predictor.embed_dim/num_heads = {epd.predictor.embed_dim}/"
                f"{epd.cfg.predictor_heads} (the pretrained predictor's), got {predictor.cfg.embed_dim}/{predictor.cfg.num_heads}"
            )
        log.info("copied %d pretrained predictor blocks", predictor.init_blocks_from(epd.predictor.blocks))

    if cfg.data.cache_latents:
        from ..data import LeRobotDataset
        from .latent_cache import LatentWindowDataset, build_latent_cache

        episodes = cfg.data.episodes if cfg.data.episodes is not None else LeRobotDataset(cfg.data.source).episode_indices
        cache = out / "latents"
        # Collective: every rank encodes its share of the episodes on its own GPU (the trainer's,
        # cuda:LOCAL_RANK), in the loop's precision (as the on-the-fly targets under its autocast).
        build_latent_cache(backbone, ckpt / "model.safetensors" if ckpt is not None else None, cfg.data.source,
                           episodes, cache, backbone.img_size, cfg.pool, cfg.data.camera_key,
                           precision=cfg.loop.precision, decoder=cfg.data.decoder)
        dataset = LatentWindowDataset(cache, cfg.data.source, episodes, cfg.data.window, cfg.data.stride,
                                      cfg.data.frame_skip)
    else:
        dataset = TrajectoryDataset(
            cfg.data.source, window=cfg.data.window, stride=cfg.data.stride, frame_skip=cfg.data.frame_skip,
            camera_key=cfg.data.camera_key, episodes=cfg.data.episodes, chunk_actions=True, decoder=cfg.data.decoder,
            # The backbone's own resize and normalisation (float: the Trainer's on-device uint8
            # normalisation is ImageNet's, which is not every backbone's).
            transform=backbone.transform(),
        )
    objective = WorldModelObjective(backbone, stats, cfg.loss, cfg.rollout_steps,
                                    cfg.w_teacher_forcing, cfg.w_rollout, cfg.pool, cfg.w_proprio)
    if ckpt is not None:
        if _is_main():
            snapshot_encoder(ckpt, out / ENCODER_DIR)
        _barrier()
        # Relative to the run folder: the run keeps its own copy of the frozen encoder, so moving
        # the run or deleting the pretraining run does not break WorldModel.load.
        where = {"encoder_checkpoint": ENCODER_DIR, "encoder_source": str(ckpt)}
    else:
        # Released weights stay where the user keeps them (GBs, not copied): the record names them and
        # the fingerprint lets WorldModel.load refuse other weights at that path.
        where = {"encoder_checkpoint": None, "encoder_source": backbone.spec,
                 "backbone": {**backbone.record, "fingerprint": backbone.fingerprint()}}
    extra = {"world_model": {
        "predictor": predictor.config_dict(), **where,
        "norm_stats": asdict(stats), "pool": cfg.pool, "frame_skip": cfg.data.frame_skip, "train_config": asdict(cfg),
    }}
    trainer = Trainer(predictor, objective, dataset, cfg.loop, out, collate_fn=collate_windows, extra_state=extra)
    history = trainer.fit()
    summary = {
        **trainer.summary(history),
        "encoder_checkpoint": str(ckpt) if ckpt is not None else backbone.spec,
        "backbone": backbone.describe(),
        "nonfinite_steps": trainer.nonfinite,
        "data_failures": dict(dataset.failures),
    }
    if trainer.is_main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def open_backbone(cfg: WorldModelTrainConfig) -> tuple[Backbone, object, Path | None]:
    """``(backbone, epd, ckpt)``: our encoder's run also gives its EPD model and checkpoint folder
    (snapshot, latent-cache key, decoder); other backbones give ``(backbone, None, None)``."""
    if is_backbone_spec(cfg.encoder):
        backbone = load_backbone(cfg.encoder, img_size=cfg.encoder_img_size, seed=cfg.loop.seed)
        log.info("world model on %s (no pixel decoder: WorldModel.decode will not be available)", backbone.describe())
        return backbone, None, None
    ckpt = resolve_checkpoint(cfg.encoder).resolve()
    epd, _ = load_epd(ckpt)
    if epd.cfg.tubelet_size != 1:
        raise ValueError("the world model needs tubelet_size=1 on our encoder (its decoder reconstructs whole "
                         f"tubelets); {ckpt} has tubelet_size={epd.cfg.tubelet_size}")
    if cfg.encoder_img_size not in (None, epd.cfg.img_size):
        raise ValueError(f"encoder_img_size={cfg.encoder_img_size}: our encoder {ckpt} runs at the size it was "
                         f"pretrained at ({epd.cfg.img_size}), which its decoder needs; leave encoder_img_size unset")
    if epd.decoder is None:
        log.warning("%s has no pixel decoder (Stage 2?): WorldModel.decode will not be available", ckpt)
    return VideoViTBackbone.from_epd(epd, str(ckpt)), epd, ckpt


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


ENCODER_DIR = "encoder"


def snapshot_encoder(ckpt: Path, dest: Path) -> Path:
    """Copy a pretraining checkpoint's weights and ``state.json`` (not its optimiser) to ``dest``.

    Written into a temporary folder and renamed, so ``dest`` is complete or absent; an existing
    copy is kept only if it holds the same weights (same size and modification-independent bytes).
    """
    import filecmp
    import os
    import shutil
    import tempfile

    from ..utils.io import fsync_dir

    files = ("model.safetensors", "state.json")
    if dest.is_dir() and all(filecmp.cmp(ckpt / f, dest / f, shallow=False) for f in files if (dest / f).exists()) \
            and all((dest / f).exists() for f in files):
        return dest
    if dest.exists():
        raise FileExistsError(f"{dest} holds a different encoder than {ckpt}: use a new out folder")
    tmp = Path(tempfile.mkdtemp(prefix=".encoder-", dir=dest.parent))
    for f in files:
        shutil.copyfile(ckpt / f, tmp / f)
        with open(tmp / f, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    return dest


def collate_windows(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in ("frames", "latents", "actions", "proprio") if k in items[0]}
