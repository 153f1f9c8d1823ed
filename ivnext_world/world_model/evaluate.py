"""Held-out evaluation of the world model: latent error against horizon, and imagined-rollout videos.

For windows of ``context + horizon`` frames from held-out episodes of a LeRobot-layout dataset:
encode the real frames, imagine frames ``context .. context + H - 1`` from the first ``context``
ones with the real actions, and measure per horizon ``h = 1..H`` (``h`` = steps after the last
context frame) the error against the encoded real frame, for

- ``world_model``: the action-conditioned (or action-free) world model's KV-cached rollout;
- ``masked_predictor`` (optional, needs ``epd``): the pretrained predictor "as is", future masked
  (:mod:`.masked_rollout`); horizons beyond its clip are ``null``;
- ``copy_last``: the last context latent repeated (the "nothing moves" baseline).

Metrics (in the common space of :func:`~.masked_rollout.normalized_patch_latents`: patch tokens,
each L2-normalised, so all three are comparable): ``l1`` = mean absolute difference per element
(the V-JEPA 2-AC training/planning distance, averaged over tokens), ``cosine`` = mean cosine
similarity per token. ``l1_raw`` (world model and copy-last only) = mean absolute difference of
the raw latents including the cls tokens (the space the world model is trained in).

Outputs in ``out``: ``errors.json``, ``error_vs_horizon.png`` and, when the world model can decode,
``rollout_XX.gif`` (or ``.mp4``): ground truth | context frames then decoded imagined frames.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .masked_rollout import masked_future_prediction, normalized_patch_latents
from .model import WorldModel
from .precision import check_precision

log = logging.getLogger(__name__)

__all__ = ["EvalConfig", "copy_last", "evaluate_world_model", "horizon_errors"]

METHODS = ("world_model", "masked_predictor", "copy_last")


@dataclass
class EvalConfig:
    world_model: str  # world-model run/checkpoint folder (WorldModel.load)
    data: str  # LeRobot-layout folder
    episodes: Optional[List[int]] = None  # held-out episodes; None = all (only sensible for unseen data)
    context: int = 1  # observed frames before the imagined ones
    horizon: int = 8  # imagined frames: errors at h = 1..horizon
    epd: Optional[str] = None  # pretraining checkpoint for the action-free masked predictor (optional)
    stride: Optional[int] = None  # window start spacing in an episode; None = context + horizon (disjoint)
    max_windows: int = 64  # evenly spaced over all windows: bounds the cost on long datasets
    batch_size: int = 16
    videos: int = 2  # windows written as videos (0: none)
    video_format: str = "gif"  # gif (Pillow, always available) | mp4 (needs imageio-ffmpeg)
    decode_steps: int = 4  # DDIM steps per decoded frame
    camera_key: Optional[str] = None
    device: str = "cpu"
    precision: str = "auto"  # inference: auto (bf16 autocast on a bf16 GPU, else fp32) | fp32 | bf16
    seed: int = 0
    out: str = "outputs/world_model_eval"

    def __post_init__(self):
        if self.context < 1 or self.horizon < 1:
            raise ValueError(f"context and horizon must be >= 1, got {self.context}, {self.horizon}")
        check_precision(self.precision)
        if self.video_format not in ("gif", "mp4"):
            raise ValueError(f"video_format must be 'gif' or 'mp4', got {self.video_format!r}")


def copy_last(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """Baseline: context latents ``(B, Tc, ...)`` -> the last one repeated ``(B, horizon, ...)``."""
    return context[:, -1:].expand(-1, horizon, *context.shape[2:])


def horizon_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Normalised patch latents ``(B, H, N, D)`` -> summed-over-batch ``l1`` and ``cosine`` per horizon ``(H,)``."""
    l1 = (pred - truth).abs().mean(dim=(2, 3))  # (B, H)
    cos = F.cosine_similarity(pred, truth, dim=-1).mean(dim=2)  # (B, H)
    return {"l1": l1.sum(0), "cosine": cos.sum(0)}


def evaluate_world_model(cfg: EvalConfig) -> dict:
    """Run the evaluation; writes the outputs to ``cfg.out`` and returns the ``errors.json`` content."""
    from ..data import TrajectoryDataset

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    wm = WorldModel.load(cfg.world_model, cfg.device, cfg.precision)
    pred_model = wm._require_predictor()
    if cfg.context + cfg.horizon - 1 > pred_model.cfg.max_frames:
        raise ValueError(f"context + horizon - 1 = {cfg.context + cfg.horizon - 1} exceeds the predictor's "
                         f"max_frames={pred_model.cfg.max_frames}")
    epd = None
    masked_h = 0
    if cfg.epd:
        from ..pretrain.run import load_epd

        epd = load_epd(cfg.epd)[0].to(cfg.device).eval()
        masked_h = min(cfg.horizon, (epd.cfg.num_frames - cfg.context) // epd.encoder.tubelet_size)
        if masked_h < 1:
            raise ValueError(f"the EPD clip of {epd.cfg.num_frames} frames leaves no room after {cfg.context} context frames")

    window = cfg.context + cfg.horizon
    # Frames wm.frame_skip env steps apart, each with the chunk of env actions up to the next one.
    ds = TrajectoryDataset(cfg.data, window=window, stride=cfg.stride or window * wm.frame_skip, episodes=cfg.episodes,
                           camera_key=cfg.camera_key, on_error="raise", frame_skip=wm.frame_skip, chunk_actions=True)
    if len(ds) == 0:
        raise ValueError(f"no window of {window} frames in {cfg.data} (episodes {cfg.episodes}): shorten the horizon")
    picks = np.unique(np.linspace(0, len(ds) - 1, min(cfg.max_windows, len(ds))).round().astype(int)).tolist()

    h, c, p = cfg.horizon, cfg.context, wm.num_prefix_tokens
    sums = {m: {"l1": torch.zeros(h), "cosine": torch.zeros(h)} for m in METHODS}
    raw = {m: torch.zeros(h) for m in ("world_model", "copy_last")}
    video_windows, episodes = [], set()
    sens, sens_n = torch.zeros(h), 0
    prop_err = {"world_model": torch.zeros(h), "hold_last": torch.zeros(h)}
    for lo in range(0, len(picks), cfg.batch_size):
        items = [ds[i] for i in picks[lo:lo + cfg.batch_size]]
        episodes.update(int(it["episode_index"]) for it in items)
        frames = torch.stack([it["frames"] for it in items])  # (B, T, 3, H, W) in [0, 1]
        acts = torch.stack([it["actions"] for it in items])  # (B, T, A) raw
        prop = torch.stack([it["proprio"] for it in items])  # (B, T, S) raw
        z = wm.encode(frames).cpu()  # (B, T, n, D)
        ctx, truth = z[:, :c], z[:, c:]
        if wm.action_conditioned:
            imagined, imagined_prop = wm.rollout(ctx, acts[:, c - 1:c - 1 + h], proprio=prop[:, :c],
                                                 context_actions=acts[:, :c - 1] if c > 1 else None,
                                                 return_proprio=True)
            imagined = imagined.cpu()
            if wm.predicts_proprio:  # Euclidean proprio error per horizon, model vs holding the last one
                true_p = prop[:, c:c + h]
                prop_err["world_model"] += (imagined_prop.cpu() - true_p).norm(dim=-1).sum(0)
                prop_err["hold_last"] += (prop[:, c - 1:c] - true_p).norm(dim=-1).sum(0)
        else:
            imagined = wm.rollout(ctx, horizon=h).cpu()
        if wm.action_conditioned and len(items) > 1:
            # Same contexts, actions of the neighbouring window: how much do the actions matter?
            swap = torch.roll(torch.arange(len(items)), 1)
            other = wm.rollout(ctx, acts[swap, c - 1:c - 1 + h], proprio=prop[:, :c],
                               context_actions=acts[:, :c - 1] if c > 1 else None).cpu()
            sens += horizon_errors(normalized_patch_latents(other, p), normalized_patch_latents(imagined, p))["l1"]
            sens_n += len(items)
        baseline = copy_last(ctx, h)
        truth_n = normalized_patch_latents(truth, p)
        preds = {"world_model": imagined, "copy_last": baseline}
        for name, pr in preds.items():
            for k, v in horizon_errors(normalized_patch_latents(pr, p), truth_n).items():
                sums[name][k] += v
            raw[name] += (pr - truth).abs().mean(dim=(2, 3)).sum(0)
        if epd is not None:
            masked = masked_future_prediction(epd, frames[:, :c], masked_h, num_steps=cfg.decode_steps,
                                              generator=torch.Generator(cfg.device).manual_seed(cfg.seed)).cpu()
            for k, v in horizon_errors(masked, truth_n[:, :masked_h]).items():
                sums["masked_predictor"][k][:masked_h] += v
        video_windows += [(frames[i], imagined[i]) for i in range(len(items))][: max(cfg.videos - len(video_windows), 0)]

    n = len(picks)
    methods = {}
    for name in METHODS:
        if name == "masked_predictor" and epd is None:
            continue
        valid = h if name != "masked_predictor" else masked_h
        methods[name] = {k: [float(v[i] / n) if i < valid else None for i in range(h)] for k, v in sums[name].items()}
        if name in raw:
            methods[name]["l1_raw"] = (raw[name] / n).tolist()
    wm_l1, cl_l1 = methods["world_model"]["l1"], methods["copy_last"]["l1"]
    result = {
        "horizons": list(range(1, h + 1)),
        "num_windows": n,
        "episodes": sorted(episodes),
        "space": "L2-normalised patch tokens (cls dropped); l1 = mean |diff| per element, cosine = mean per token",
        "methods": methods,
        "world_model_beats_copy_last": [a < b for a, b in zip(wm_l1, cl_l1)],
        # l1 between imagined futures under the window's own actions and under another window's,
        # divided by copy-last's error (how far the true future moves): ~0 = the model ignores actions.
        "action_sensitivity": [float(v / sens_n) / cl if sens_n and cl else None for v, cl in zip(sens, cl_l1)],
        "config": asdict(cfg),
    }
    if wm.predicts_proprio:
        # Raw units of the dataset's observation.state (built-in tasks: metres and m/s).
        result["proprio_error"] = {k: (v / n).tolist() for k, v in prop_err.items()}
    (out / "errors.json").write_text(json.dumps(result, indent=2))
    plot_errors(result, out / "error_vs_horizon.png")
    result["videos"] = write_videos(wm, video_windows, cfg, out)
    (out / "errors.json").write_text(json.dumps(result, indent=2))
    return result


def plot_errors(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    hs = result["horizons"]
    for name, m in result["methods"].items():
        for ax, key in zip(axes, ("l1", "cosine")):
            pts = [(x, y) for x, y in zip(hs, m[key]) if y is not None]
            ax.plot(*zip(*pts), marker="o", label=name.replace("_", " "))
    for ax, title in zip(axes, ("latent L1 (lower is better)", "cosine similarity (higher is better)")):
        ax.set_xlabel("horizon (frames after the context)")
        ax.set_xticks(hs)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"held-out latent prediction error ({result['num_windows']} windows)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_videos(wm: WorldModel, windows: list, cfg: EvalConfig, out: Path) -> list[str]:
    """Ground truth | context + decoded imagined frames, one video per window; [] if the model cannot decode."""
    if not windows:
        return []
    if wm.decoder is None or wm.pool != 1:
        log.warning("no videos: this world model cannot decode its latents (no pixel decoder or pooled latents)")
        return []
    import imageio.v2 as imageio
    import imageio.v3 as iio

    paths = []
    size = wm.img_size
    for i, (frames, imagined) in enumerate(windows):
        gen = torch.Generator(wm.device).manual_seed(cfg.seed)
        decoded = wm.decode(imagined[None], num_steps=cfg.decode_steps, generator=gen)[0].cpu()  # (H, 3, S, S)
        truth = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True)  # (T, 3, S, S)
        right = torch.cat([truth[:cfg.context], decoded], dim=0)
        gap = torch.ones(truth.shape[0], 3, size, 2)
        video = torch.cat([truth, gap, right], dim=3)  # (T, 3, S, 2S + 2)
        arr = (video.clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
        path = out / f"rollout_{i:02d}.{cfg.video_format}"
        if cfg.video_format == "gif":
            iio.imwrite(path, arr, duration=200, loop=0)  # Pillow plugin: ms per frame
        else:
            imageio.mimsave(path, list(arr), fps=5, macro_block_size=1)
        paths.append(path.name)
    return paths


def decode_fidelity(wm: WorldModel, data: str, episodes: List[int], train_episodes: List[int] | None, sheet: Path,
                    frames: int = 12, num_steps: int = 4, seed: int = 0, camera_key: Optional[str] = None) -> Optional[dict]:
    """Decode held-out frames' true latents and compare with the frames: mean PSNR (dB) over ``frames``
    frames evenly spaced over ``episodes``, a sheet (frames on top, decoded below), and for scale the PSNR
    of the mean image of ``train_episodes``' frames (a "decoder" that never looks at the latents).
    None when the world model cannot decode (no pixel decoder, or pooled latents)."""
    from ..data import TrajectoryDataset
    from ..viz.sheets import image_rows

    if wm.decoder is None or wm.pool != 1:
        return None
    ds = TrajectoryDataset(data, window=1, stride=1, episodes=list(episodes), camera_key=camera_key, on_error="raise")
    idx = np.linspace(0, len(ds) - 1, min(frames, len(ds))).round().astype(int).tolist()
    x = torch.stack([ds[i]["frames"][0] for i in idx])  # (N, 3, H, W) in [0, 1]
    truth = F.interpolate(x, size=(wm.img_size, wm.img_size), mode="bilinear", antialias=True).clamp(0, 1)
    with torch.no_grad():
        z = wm.encode(x[:, None])
        decoded = wm.decode(z, num_steps=num_steps, generator=torch.Generator(wm.device).manual_seed(seed))[:, 0].cpu()
    psnr = _psnr(decoded, truth)
    mean_psnr = None
    if train_episodes:
        tr = TrajectoryDataset(data, window=1, stride=7, episodes=list(train_episodes), camera_key=camera_key, on_error="raise")
        mean_img = torch.stack([tr[i]["frames"][0] for i in range(len(tr))]).mean(0, keepdim=True)
        mean_img = F.interpolate(mean_img, size=(wm.img_size, wm.img_size), mode="bilinear", antialias=True)
        mean_psnr = _psnr(mean_img.expand_as(truth), truth)
    k = min(8, len(idx))
    image_rows([truth[:k], decoded[:k]], sheet, row_labels=["held-out frame", "decoded"],
               title=f"decoded from true latents: {psnr:.1f} dB")
    return {"psnr_db": psnr, "mean_image_psnr_db": mean_psnr, "frames": len(idx), "num_steps": num_steps, "sheet": str(sheet)}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())
