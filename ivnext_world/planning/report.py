"""Outputs of the planning evaluation: episode videos, results.json / results.md, the budget plot.

Episode video panels, left to right: the observation, the goal image, and what the world model
imagines at the end of the current plan. The imagined latents are shown either decoded by the
Stage-1 diffusion decoder (only possible for unpooled latents; last imagined frame only, once per
plan, 10 DDIM steps) or as the *nearest* frame of the world model's training data in latent space
(L1), which works for any world model and is labelled as such.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["EpisodeRecorder", "ImaginedView", "write_reports"]


class ImaginedView:
    """``view(latents (n, D)) -> (S, S, 3) uint8``: a picture of one imagined latent frame."""

    def __init__(self, wm, mode: str, bank_latents=None, bank_rgb=None):
        self.wm, self.mode, self.bank_latents, self.bank_rgb = wm, mode, bank_latents, bank_rgb

    @staticmethod
    def build(wm, mode: str = "auto", bank_frames: int = 400, run_dir: str | Path | None = None) -> "ImaginedView":
        """``run_dir``: the world-model run, whose training data feeds the nearest-neighbour bank."""
        if mode == "none":
            return ImaginedView(wm, "none")
        can_decode = wm.decoder is not None and wm.pool == 1
        if mode == "decode" or (mode == "auto" and can_decode):
            if not can_decode:
                raise ValueError("video_view=decode needs a world model with a decoder and pool=1")
            return ImaginedView(wm, "decode")
        bank = _frame_bank(wm, bank_frames, run_dir) if run_dir is not None else None
        if bank is None:
            return ImaginedView(wm, "none")
        return ImaginedView(wm, "nearest", *bank)

    @property
    def label(self) -> str:
        return {"decode": "decoded (Stage-1 diffusion decoder, last imagined frame)",
                "nearest": "nearest training frame to the last imagined latents (L1)",
                "none": "not shown"}[self.mode]

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, size: int) -> np.ndarray:
        if self.mode == "decode":
            img = self.wm.decode(latents[None, None], num_steps=10,
                                 generator=torch.Generator(self.wm.device).manual_seed(0))[0, 0]  # (3, S, S)
            img = torch.nn.functional.interpolate(img[None], size=(size, size), mode="bilinear")[0]
            return (img.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        if self.mode == "nearest":
            d = (self.bank_latents - latents[None].to(self.bank_latents)).abs().flatten(1).mean(1)
            img = self.bank_rgb[int(d.argmin())]
            return _resize(img, size)
        return np.zeros((size, size, 3), np.uint8)


def _frame_bank(wm, n: int, run_dir):
    """Up to ``n`` evenly spaced frames of the world model's training data and their latents."""
    from ..data import TrajectoryDataset
    from .evaluate import world_model_budget

    source = world_model_budget(run_dir).get("data")
    if not source or not Path(source).exists():
        return None
    ds = TrajectoryDataset(source, window=1)
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
    frames = torch.stack([ds[int(i)]["frames"][0] for i in idx])  # (N, 3, H, W) in [0, 1]
    latents = torch.cat([wm.encode(frames[i:i + 64][:, None])[:, 0] for i in range(0, len(frames), 64)])
    rgb = (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return latents, rgb


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear")
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


class EpisodeRecorder:
    """Collects ``[observation | goal | imagined]`` frames of one episode and writes an mp4."""

    def __init__(self, view: ImaginedView | None):
        self.view, self.frames = view, []
        self._plan, self._img = -1, None

    def add(self, obs_rgb: np.ndarray, goal_rgb: np.ndarray, policy) -> None:
        size = obs_rgb.shape[0]
        panels = [obs_rgb, _resize(goal_rgb, size)]
        if self.view is not None and self.view.mode != "none":
            imagined = getattr(policy, "imagined", None)
            if imagined is not None and getattr(policy, "num_plans", 0) != self._plan:
                self._plan, self._img = policy.num_plans, self.view(imagined[-1], size)
            panels.append(self._img if self._img is not None else np.zeros_like(obs_rgb))
        self.frames.append(np.concatenate(panels, axis=1))

    def write(self, path: Path, fps: int = 10) -> Path:
        import imageio

        imageio.mimwrite(path, self.frames, fps=fps, macro_block_size=1)
        return path


def write_reports(results: dict, out: Path) -> None:
    """results.json, results.md and (with a sweep) success_vs_budget.png."""
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = [f"# Planning evaluation: {results['task']}, {results['episodes']} episodes", "",
             f"Success = {results['success']}. Seeds {results['seeds'][0]}..{results['seeds'][-1]}.", ""]
    wm = results.get("world_model")
    if wm:
        lines += [f"World model: `{wm.get('run')}`, {wm.get('step')} steps, batch {wm.get('batch_size')}, "
                  f"{wm.get('num_episodes')} episodes / {wm.get('frames')} frames of `{wm.get('data')}`, pool {wm.get('pool')}, "
                  f"frame skip {wm.get('frame_skip', 1)}.", ""]
    lines += [f"| method | success | episodes | mean final distance ({results.get('distance_unit', 'm')}) | mean steps | s / action |",
              "|---|---|---|---|---|---|"]
    for name, m in results["methods"].items():
        lines.append(f"| {name} | {m['success_rate']:.0%} ({m['successes']}/{m['episodes']}) | {m['episodes']} | "
                     f"{m['mean_final_distance']:.3f} | {m['mean_steps']:.1f} | {m['sec_per_action']:.3f} |")
    sweep = results.get("sweep")
    if sweep:
        lines += ["", f"## Success vs planning budget ({sweep['planner']}, {sweep['param']}, {sweep['episodes']} episodes)", "",
                  f"| {sweep['param']} | success | s / action |", "|---|---|---|"]
        lines += [f"| {p['value']} | {p['success_rate']:.0%} | {p['sec_per_action']:.3f} |" for p in sweep["points"]]
        _plot_sweep(sweep, out / "success_vs_budget.png")
        lines += ["", "![success vs budget](success_vs_budget.png)"]
    if results.get("videos"):
        lines += ["", "Videos (observation | goal | imagined end of the current plan): "
                  + ", ".join(f"`{Path(v).name}`" for v in results["videos"])]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def _plot_sweep(sweep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["value"] for p in sweep["points"]]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(xs, [100 * p["success_rate"] for p in sweep["points"]], "o-")
    ax.set_xscale("log")
    ax.set_xlabel(f"{sweep['planner']} {sweep['param']}")
    ax.set_ylabel("success (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(f"success vs planning budget ({sweep['episodes']} episodes)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
