"""``run_classify(cfg)``: the whole frozen-probe evaluation, what ``ivnext-classify`` and the launcher run.

1. build the frozen backbone and check it takes the probe's clips (frames, pixels);
2. read the splits and check every label against the class list (before anything is decoded);
3. extract tokens once per view (``features=cache``) or plan to run the backbone in every step;
4. train the head grid (kinds x lrs x weight decays) with the shared loop: checkpoints, exact resume;
5. score every head on the validation and test videos (views averaged), pick per head kind and
   overall the head with the best validation top-1, and write ``results.json``, ``summary.json``,
   confusion-matrix PNGs and TensorBoard scalars (``eval/<split>/top1/<head>``).

Everything in ``out`` is a function of the config: rerunning the command resumes training from the
newest checkpoint and reuses cached tokens whose fingerprint matches.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch

from ...utils.io import atomic_write_text
from .backbone import head_count, load_backbone
from .config import ClassifyConfig
from .data import ClipViews, load_splits
from .evaluate import average_views, grid_view_logits, metrics, plot_confusion, token_batches
from .features import DTYPES, TokenViews, VideoViews, _bad, cache_bytes, cached_tokens, view_batches
from .grid import HeadGrid
from .train import ClassifyObjective, GridTrainer

log = logging.getLogger(__name__)
EVAL_SPLITS = ("val", "test")


def _check(cfg: ClassifyConfig) -> None:
    if cfg.features not in ("cache", "online"):
        raise ValueError(f"features must be 'cache' or 'online', got {cfg.features!r}")
    if cfg.cache_dtype not in DTYPES:
        raise ValueError(f"cache_dtype must be one of {sorted(DTYPES)}, got {cfg.cache_dtype!r}")
    if cfg.heads.average not in ("logits", "softmax"):
        raise ValueError(f"heads.average must be 'logits' or 'softmax', got {cfg.heads.average!r}")
    if len(cfg.data.train_scale) != 2 or not 0 < cfg.data.train_scale[0] <= cfg.data.train_scale[1] <= 1:
        raise ValueError(f"data.train_scale must be [min, max] with 0 < min <= max <= 1, got {cfg.data.train_scale}")
    if not cfg.data.test and not cfg.data.val:
        raise ValueError("give data.test (and ideally data.val): there is nothing to evaluate on")


def build_views(cfg: ClassifyConfig, items, backbone, mode: str, train_views: int | None = None) -> ClipViews:
    d = cfg.data
    return ClipViews(items, num_frames=d.num_frames, frame_step=d.frame_step, resolution=d.resolution,
                     mean=backbone.mean, std=backbone.std, views=mode, clips=d.eval_clips, crops=d.eval_crops,
                     train_views=train_views or d.train_views, train_scale=d.train_scale, flip=d.flip,
                     short_clip=d.short_clip, on_error=d.on_error, max_failures=d.max_failures,
                     max_failure_fraction=d.max_failure_fraction)


def run_classify(cfg: ClassifyConfig) -> dict:
    """Train and score the head grid of ``cfg``; returns the summary (also in ``<out>/summary.json``)."""
    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    d = cfg.data
    backbone = load_backbone(cfg.backbone, num_frames=d.num_frames, img_size=d.resolution,
                             random_model=asdict(cfg.random_model), seed=cfg.random_seed, temporal_embed=cfg.temporal_embed,
                             timm_kwargs=dict(cfg.backbone_kwargs))
    splits, classes = load_splits({"train": d.train, "val": d.val, "test": d.test}, d.classes, d.label_column, d.camera_key,
                                  {"train": d.train_episodes, "val": d.val_episodes, "test": d.test_episodes})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone.to(device)
    n_tok = backbone.num_tokens(d.num_frames, d.resolution)
    heads = head_count(backbone.embed_dim, cfg.heads.num_heads or backbone.num_heads)
    torch.manual_seed(cfg.loop.seed)
    grid = HeadGrid(backbone.embed_dim, len(classes), cfg.heads.kinds, cfg.heads.lrs, cfg.heads.weight_decays,
                    num_heads=heads, depth=cfg.heads.depth, mlp_ratio=cfg.heads.mlp_ratio)
    log.info("%s: %d tokens x %d per clip; %d heads (%s); %d classes; videos %s", backbone.name, n_tok, backbone.embed_dim,
             len(grid.specs), ", ".join(cfg.heads.kinds), len(classes), {k: len(s.items) for k, s in splits.items()})

    eval_splits = [s for s in EVAL_SPLITS if s in splits]
    caches: dict[str, dict] = {}
    info: dict = {"features": cfg.features}
    if cfg.features == "cache":
        n_views = {"train": d.train_views, **{s: d.eval_clips * d.eval_crops for s in eval_splits}}
        need = sum(cache_bytes(len(splits[s].items), n_views[s], n_tok, backbone.embed_dim, cfg.cache_dtype) for s in n_views)
        info["cache_mb"] = round(need / 2**20, 1)
        if need > cfg.max_cache_gb * 2**30:
            raise ValueError(f"the token cache would hold {need / 2**30:.1f} GiB (videos x views x {n_tok} tokens x "
                             f"{backbone.embed_dim} x {cfg.cache_dtype}) > max_cache_gb={cfg.max_cache_gb}: use features=online "
                             "(backbone in every step) or raise max_cache_gb")
        for s in ["train", *eval_splits]:
            caches[s] = cached_tokens(out / "features" / f"{s}.pt", backbone, build_views(cfg, splits[s].items, backbone,
                                      "train" if s == "train" else "eval"), cfg.eval_batch_size, cfg.cache_dtype,
                                      d.num_workers, device, desc=f"tokens {s}", seed=cfg.loop.seed)
        dataset = TokenViews(caches["train"]["tokens"], caches["train"]["labels"])
        objective = ClassifyObjective()
    else:
        dataset = VideoViews(build_views(cfg, splits["train"].items, backbone, "train", train_views=1))
        objective = ClassifyObjective(backbone)

    record = {"backbone": backbone.record, "classes": classes, "grid": grid.config, "heads": grid.names,
              "config": json.loads(json.dumps(asdict(cfg), default=str))}
    trainer = GridTrainer(grid, objective, dataset, cfg.loop, out, extra_state={"classify": record}, device=device)
    history = trainer.fit()

    scores, labels, failures = {}, {}, {}
    for s in eval_splits:
        if cfg.features == "cache":
            batches = token_batches(caches[s], cfg.eval_batch_size)
            failures[s] = {"failures": caches[s]["failures"], "skipped": caches[s]["skipped"]}
        else:
            views = build_views(cfg, splits[s].items, backbone, "eval")
            batches = view_batches(backbone, views, cfg.eval_batch_size, d.num_workers, device, f"eval {s}")
        view_logits, labels[s], _ = grid_view_logits(trainer.model, batches)  # (H, N, V, C)
        scores[s] = average_views(view_logits, cfg.heads.average)  # (H, N, C)
        if cfg.features == "online":
            failures[s] = {"failures": dict(views.failures), "skipped": [_bad(b) for b in views.failure_examples]}
    if cfg.features == "cache":
        failures["train"] = {"failures": caches["train"]["failures"], "skipped": caches["train"]["skipped"]}
    results = assemble(grid, classes, scores, labels, out, backbone.name, trainer.step)
    results.update(backbone=backbone.record, data={s: {"source": splits[s].source, "videos": len(splits[s].items),
                                                      **failures.get(s, {})} for s in splits},
                   views={"clips": d.eval_clips, "crops": d.eval_crops, "num_frames": d.num_frames, "frame_step": d.frame_step,
                          "resolution": d.resolution, "average": cfg.heads.average},
                   tokens_per_clip=n_tok, **info, **trainer.summary(history))
    _tensorboard(out, results, trainer.step)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    summary = summarise(results)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def assemble(grid: HeadGrid, classes: list[str], scores: dict, labels: dict, out: Path, title: str, step: int) -> dict:
    """Per-head accuracies, the selected head per kind and overall (best validation top-1; ties: lower
    validation cross-entropy), their full metrics on every split and confusion-matrix PNGs."""
    select_on = "val" if "val" in scores else "test"
    per_head = {}
    for h, spec in enumerate(grid.specs):
        row = {"kind": spec.kind, "lr": spec.lr, "weight_decay": spec.weight_decay}
        for s in scores:
            row[f"{s}_top1"] = metrics(scores[s][h], labels[s], classes)["top1"]
            row[f"{s}_loss"] = float(torch.nn.functional.cross_entropy(scores[s][h].float(), labels[s]))
        per_head[spec.name] = row

    def pick(names):
        return max(names, key=lambda n: (per_head[n][f"{select_on}_top1"], -per_head[n][f"{select_on}_loss"]))

    names = list(per_head)
    chosen = {kind: pick([n for n in names if per_head[n]["kind"] == kind]) for kind in dict.fromkeys(s.kind for s in grid.specs)}
    chosen["best"] = pick(names)
    by_kind = {}
    for key, name in chosen.items():
        h = names.index(name)
        entry = {"head": name, **per_head[name]}
        for s in scores:
            entry[s] = metrics(scores[s][h], labels[s], classes)
        report_split = "test" if "test" in scores else select_on
        png = plot_confusion(entry[report_split]["confusion"], classes, out / f"confusion_{key}.png",
                             f"{title}\n{name}: {report_split} top-1 {entry[report_split]['top1']:.3f}")
        entry["confusion_png"] = str(png)
        by_kind[key] = entry
    return {"classes": classes, "chance": 1 / len(classes), "selected_on": select_on, "step": step,
            "heads": per_head, "selected": by_kind}


def summarise(results: dict) -> dict:
    """The scalars a sweep table needs (``ivnext-launch gather``): test top-1 per head kind and overall."""
    sel = results["selected"]
    split = "test" if "test" in sel["best"] else results["selected_on"]
    out = {"backbone": results["backbone"]["spec"], "split": split, "chance": results["chance"],
           "selected_on": results["selected_on"], "steps": results["steps"], "final_loss": results["final_loss"],
           "checkpoint": results["checkpoint"], "results": str(Path(sel["best"]["confusion_png"]).parent / "results.json")}
    for key, entry in sel.items():
        out[f"{key}_top1"] = entry[split]["top1"]
        out[f"{key}_top5"] = entry[split]["top5"]
        out[f"{key}_head"] = entry["head"]
    out["confusion_png"] = sel["best"]["confusion_png"]
    return out


def _tensorboard(out: Path, results: dict, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as w:
        for name, row in results["heads"].items():
            for key, v in row.items():
                if key.endswith("_top1"):
                    w.add_scalar(f"eval/{key[:-5]}/top1/{name}", v, step)
        for key, entry in results["selected"].items():
            for s in ("val", "test"):
                if s in entry:
                    w.add_scalar(f"eval/{s}/selected_top1/{key}", entry[s]["top1"], step)
                    w.add_scalar(f"eval/{s}/selected_top5/{key}", entry[s]["top5"], step)
