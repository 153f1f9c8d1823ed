"""Imagined 3D: the depth probe applied to world-model-predicted latents.

For windows of ``context + horizon`` frames of held-out episodes: encode the real frames with the
world model's encoder, imagine frames ``context .. context + H - 1`` with the real actions
(:meth:`WorldModel.rollout`), and decode depth from the imagined last-layer patch tokens with the
probe. A world-model latent holds the encoder's *last* layer only, so a ``linear`` probe reads it
as trained; ``linear4``/``dpt`` probes are fed the last layer repeated in all 4 slots (off their
training distribution: reported, but the linear probe is the meaningful one).

Per horizon ``h = 1..H`` (steps after the last context frame), against the simulator's rendered
depth of that future frame:

- ``imagined``: probe(imagined latents);
- ``encoded``: probe(encoded *real* future frame): the ceiling a perfect world model would reach;
- ``copy_last``: probe(last context frame): the "nothing moves" baseline.

With a fixed camera most pixels never change, so whole-image errors barely separate the three;
``chg_*`` metrics use only the pixels whose true depth changed by more than ``change_tol``
(relative) since the last context frame: what a world model has to get right.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .evaluate import depth_sheet
from .features import tokens_to_map
from .geometry import chamfer_distance, point_cloud, render_point_clouds, write_ply
from .metrics import depth_metrics

log = logging.getLogger(__name__)

METHODS = ("imagined", "encoded", "copy_last")
KEYS = ("abs_rel", "rmse", "d1", "si_abs_rel", "chg_abs_rel", "chg_rmse", "chg_d1")


def check_same_encoder(features, wm) -> None:
    """The probe must have been trained on the world model's own (frozen) backbone."""
    a, b = features.backbone.state_dict(), wm.backbone.state_dict()
    same = a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in a)
    if not same:
        raise ValueError("the depth probe was trained on a different encoder than the world model's: "
                         "train the probe on the world model's backbone (its Stage-1 run, or the same backbone spec)")


@torch.no_grad()
def latents_to_depth(probe, latents: torch.Tensor, grid: tuple[int, int], num_prefix: int, out_size) -> torch.Tensor:
    """World-model latents ``(B, T, n, D)`` -> depth ``(B, T, *out_size)`` via the last-layer path."""
    b, t = latents.shape[:2]
    maps = tokens_to_map(latents.flatten(0, 1), grid, num_prefix)  # (B*T, D, h, w)
    return probe.eval().from_last_layer(maps, out_size).unflatten(0, (b, t))


def imagined_depth(
    probe, features, wm, source: str, episodes: list[int], out_dir: str | Path | None = None,
    context: int = 1, horizon: int = 8, max_windows: int = 16, camera_key: str | None = None, pictures: int = 1,
    change_tol: float = 0.05,
) -> dict:
    """Per-horizon depth errors of imagined futures (see the module docstring) and pictures."""
    from ...data import TrajectoryDataset

    check_same_encoder(features, wm)
    if wm.pool != 1:
        raise ValueError(f"the world model pools patch tokens {wm.pool}x{wm.pool}: the depth probe needs every patch token")
    ds = TrajectoryDataset(source, window=context + horizon, stride=(context + horizon) * wm.frame_skip,
                           camera_key=camera_key, episodes=list(episodes), on_error="raise",
                           frame_skip=wm.frame_skip, chunk_actions=True)
    if not ds.has_depth:
        raise ValueError(f"{source} stores no depth")
    picks = np.unique(np.linspace(0, len(ds) - 1, min(max_windows, len(ds))).round().astype(int))
    grid = features.grid
    sums = {m: {k: np.zeros(horizon) for k in KEYS} for m in METHODS}
    counts = {k: np.zeros(horizon) for k in KEYS}
    chamfer = {m: np.zeros(horizon) for m in METHODS}
    n = 0
    shown = []
    for i in picks:
        it = ds[int(i)]
        frames, gt = it["frames"][None], it["depth"][None]  # (1, T, 3, H, W), (1, T, H, W)
        size = tuple(gt.shape[-2:])
        z = wm.encode(frames)  # (1, T, n, D)
        acts, prop = it["actions"][None], it["proprio"][None]
        if wm.action_conditioned:
            imag = wm.rollout(z[:, :context], acts[:, context - 1:context - 1 + horizon], proprio=prop[:, :context],
                              context_actions=acts[:, :context - 1] if context > 1 else None)
        else:
            imag = wm.rollout(z[:, :context], horizon=horizon)
        preds = {
            "imagined": latents_to_depth(probe, imag, grid, wm.num_prefix_tokens, size)[0],  # (H, h, w)
            "encoded": latents_to_depth(probe, z[:, context:], grid, wm.num_prefix_tokens, size)[0],
            "copy_last": latents_to_depth(probe, z[:, context - 1:context], grid, wm.num_prefix_tokens, size)[0].expand(horizon, -1, -1),
        }
        truth = gt[0, context:]
        changed = (truth / gt[0, context - 1:context] - 1).abs() > change_tol  # (H, h, w)
        truth_chg = truth.where(changed, torch.full_like(truth, float("nan")))
        for m, p in preds.items():
            per = depth_metrics(p, truth, probe.cfg.min_depth, probe.cfg.max_depth, per_image=True)
            if changed.any():
                chg = depth_metrics(p, truth_chg, probe.cfg.min_depth, probe.cfg.max_depth, per_image=True)
                per.update({f"chg_{k}": chg[k] for k in ("abs_rel", "rmse", "d1")})
            for k in KEYS:
                v = per.get(k, torch.full((horizon,), float("nan")))
                sums[m][k] += v.nan_to_num(0).numpy()
                if m == METHODS[0]:
                    counts[k] += (~torch.isnan(v)).numpy()
        K = it["intrinsics"][context:].numpy() if "intrinsics" in it else None
        if K is not None:
            for h in range(horizon):
                true_cloud = point_cloud(truth[h].numpy(), K[h], max_depth=probe.cfg.max_depth)
                for m in chamfer:
                    chamfer[m][h] += chamfer_distance(point_cloud(preds[m][h].numpy(), K[h], max_depth=probe.cfg.max_depth), true_cloud)
        n += 1
        if len(shown) < pictures:
            shown.append((it, preds, K))
    result = {
        "horizons": list(range(1, horizon + 1)), "windows": n, "context": context,
        "head": probe.cfg.kind, "head_input": "last layer" if probe.cfg.kind == "linear" else "last layer repeated x4",
        "methods": {m: {k: [None if c == 0 else float(x / c) for x, c in zip(v, counts[k])] for k, v in sums[m].items()}
                    for m in METHODS},
        "changed_frames": counts["chg_abs_rel"].astype(int).tolist(),  # per horizon: windows with changed pixels
    }
    if K is not None:
        for m in chamfer:
            result["methods"][m]["chamfer"] = (chamfer[m] / n).tolist()
    if out_dir is not None:
        result.update(_pictures(result, shown, Path(out_dir), context, probe.cfg.max_depth))
    return result


def _pictures(result: dict, shown, out: Path, context: int, max_depth: float) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for m, v in result["methods"].items():
        for ax, key in zip(axes, ("abs_rel", "chg_abs_rel")):
            pts = [(h, y) for h, y in zip(result["horizons"], v[key]) if y is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
    axes[0].set(xlabel="horizon (steps)", ylabel="AbsRel, all pixels")
    axes[1].set(xlabel="horizon (steps)", ylabel="AbsRel, changed pixels")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"depth of imagined futures ({result['windows']} held-out windows, head {result['head']}: {result['head_input']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "imagined_depth_vs_horizon.png", dpi=100)
    plt.close(fig)
    files["curve"] = str(out / "imagined_depth_vs_horizon.png")
    for j, (it, preds, K) in enumerate(shown):
        horizon = preds["imagined"].shape[0]
        hs = sorted({0, horizon // 2, horizon - 1})
        rows = [{"rgb": (it["frames"][context + h].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                 "gt": it["depth"][context + h].numpy(), "pred": preds["imagined"][h].numpy(),
                 "label": f"ep {it['episode_index']} +{h + 1} imagined"} for h in hs]
        files[f"sheet_{j}"] = str(depth_sheet(rows, out / f"imagined_depth_{j:02d}.png",
                                              "real future frame | simulator depth | depth from imagined latents | error", max_depth))
        if K is not None:
            h = horizon - 1
            rgb = rows[-1]["rgb"]
            clouds = {f"true (+{h + 1})": point_cloud(it["depth"][context + h].numpy(), K[h], rgb, max_depth),
                      f"imagined (+{h + 1})": point_cloud(preds["imagined"][h].numpy(), K[h], rgb, max_depth)}
            write_ply(clouds[f"imagined (+{h + 1})"], out / f"imagined_cloud_{j:02d}.ply")
            png, how = render_point_clouds(clouds, out / f"imagined_cloud_{j:02d}.png", title="imagined future point cloud")
            files[f"cloud_{j}"], files["renderer"] = str(png), how
    return {"files": files}
