"""Quality against steps for the main job's recipe (the curves behind README "what the bars would take").

    # Stage 1: the main job's Stage-1 recipe on one longer schedule; at each checkpoint the held-out
    # state-probe R^2 (random init as step 0) and the decoder's PSNR on held-out frames' true latents
    python scripts/main_job_curves.py stage1 --data outputs/demo/data --train 0-26 --test 27-35 \\
        --steps 600 --every 150 --out runs/curve_s1
    # World model: the main job's world model (frame skip 5) on a Stage-1 encoder, trained longer;
    # ratio to copy-last and action sensitivity per horizon at each checkpoint (--steps 0: evaluate only)
    python scripts/main_job_curves.py world-model --data data100 --encoder outputs/demo/stage1 \\
        --train 0-79 --test 80-99 --steps 1500 --every 300 --out runs/curve_wm
    # a point of the README's world-model sweep: the same with overrides of the world model's config
    python scripts/main_job_curves.py world-model ... --set predictor.embed_dim=192 predictor.depth=4 data.window=6
    # Depth and classification: the main job's depth probe (moving-pixel AbsRel, with the static map)
    # and attentive probe (arm8) on random init and on each checkpoint of a Stage-1 curve run
    python scripts/main_job_curves.py probes --data outputs/demo/data --train 0-26 --test 27-35 \
        --run runs/curve_s1 --out runs/curve_probes
    # Planning on reach: the main job's reach world model (on a Stage-1 encoder) trained longer; CEM-MPC
    # success with the latent-only and the latent + proprio objective at each checkpoint
    python scripts/main_job_curves.py planning --encoder outputs/demo/stage1 --steps 900 --every 300 \
        --episodes 8 --out runs/curve_plan

Writes ``curve.json`` in ``--out`` and prints one JSON line per checkpoint.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def _range(text: str) -> list[int]:
    a, b = (int(x) for x in text.split("-"))
    return list(range(a, b + 1))


def stage1_curve(args) -> list[dict]:
    import torch
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.pretrain.epd import build_epd
    from ivnext_world.pretrain.run import load_epd, run_pretrain
    from ivnext_world.probes import state_probe
    from ivnext_world.world_model import WorldModel
    from ivnext_world.world_model.evaluate import decode_fidelity

    cfg = OmegaConf.to_object(load_config("demo")).stage1
    cfg.data.source, cfg.data.episodes, cfg.out = args.data, args.train, args.out
    cfg.loop.steps, cfg.loop.ckpt_every, cfg.loop.keep_last = args.steps, args.every, 10_000
    run_pretrain(cfg)
    torch.manual_seed(0)
    rows = [{"step": 0, "r2": state_probe(build_epd(cfg.model).encoder, args.data, args.train, args.test).r2}]
    print(json.dumps(rows[-1]), flush=True)
    for ck in sorted((Path(args.out) / "checkpoints").glob("step_*")):
        r2 = state_probe(load_epd(ck)[0].encoder, args.data, args.train, args.test).r2
        fid = decode_fidelity(WorldModel.load(ck), args.data, args.test, args.train, Path(args.out) / f"decoded_{ck.name}.png")
        rows.append({"step": int(ck.name.split("_")[1]), "r2": r2, "psnr_db": fid["psnr_db"],
                     "mean_image_psnr_db": fid["mean_image_psnr_db"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def world_model_curve(args) -> list[dict]:
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.world_model.evaluate import EvalConfig, evaluate_world_model
    from ivnext_world.world_model.train import train_world_model

    w = OmegaConf.to_object(load_config("demo")).world_model
    if args.set:  # a sweep point: dotlist overrides of the main job's world model (unknown keys raise)
        w = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(w), OmegaConf.from_dotlist(args.set)))
    w.encoder, w.data.source, w.data.episodes, w.out = args.encoder, args.data, args.train, args.out
    w.loop.steps, w.loop.ckpt_every, w.loop.keep_last = args.steps, args.every, 10_000
    if args.steps > 0:
        train_world_model(w)
    rows = []
    for ck in sorted((Path(args.out) / "checkpoints").glob("step_*")):
        r = evaluate_world_model(EvalConfig(world_model=str(ck), data=args.data, episodes=args.test, horizon=5,
                                            max_windows=48, videos=0, out=str(Path(args.out) / f"eval_{ck.name}")))
        wm, cl = r["methods"]["world_model"]["l1"], r["methods"]["copy_last"]["l1"]
        rows.append({"step": int(ck.name.split("_")[1]), "ratio_to_copy_last": [a / b for a, b in zip(wm, cl)],
                     "action_sensitivity": r["action_sensitivity"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _checkpoints(run: str) -> dict[str, str]:
    cks = sorted((Path(run) / "checkpoints").glob("step_*"))
    if not cks:
        raise FileNotFoundError(f"no checkpoints in {run}/checkpoints: run the stage1 curve first")
    return {f"step {int(ck.name.split('_')[1])}": str(ck) for ck in cks}


def probes_curve(args) -> list[dict]:
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.probes.classify.demo import classification_section
    from ivnext_world.probes.depth import run_depth_probe

    demo = OmegaConf.to_object(load_config("demo"))
    encoders = {"step 0": None, **_checkpoints(args.run)}  # step 0: random init of the same architecture
    depth = run_depth_probe(encoders, args.data, args.train, args.test, Path(args.out) / "depth", steps=demo.depth_steps)
    dyn = {r["encoder"]: r.get("dyn_abs_rel") for r in depth["rows"] if r["head"] in ("linear", "-")}
    c = demo.classification
    cls = classification_section(None, encoders, Path(args.out) / "classification", clips_per_class=tuple(c.clips_per_class),
                                 steps=c.steps, head_depth=c.head_depth, resolution=c.resolution)
    kind = cls["results"]["settings"]["kinds"][-1]
    top1 = {r["backbone"]: r[kind] for r in cls["results"]["rows"]}
    rows = [{"step": int(name.split()[1]), "depth_dyn_abs_rel": dyn.get(name), "classification_top1": top1.get(name)}
            for name in encoders]
    rows.append({"baselines": {k: v for k, v in dyn.items() if k not in encoders},
                 "classification": {k: v for k, v in top1.items() if k not in encoders}})
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def planning_curve(args) -> list[dict]:
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.planning.agent import ObjectiveConfig
    from ivnext_world.planning.evaluate import run_planning_eval
    from ivnext_world.sim import collect
    from ivnext_world.world_model.train import train_world_model

    pc = OmegaConf.to_object(load_config("demo")).planning
    pc.collect.out = str(Path(args.out) / "data_reach")
    data = collect(pc.collect)
    w = pc.world_model
    w.encoder, w.data.source, w.out = args.encoder, data.out, args.out
    w.loop.steps, w.loop.ckpt_every, w.loop.keep_last = args.steps, args.every, 10_000
    train_world_model(w)
    seed = pc.collect.seed + 10_000  # the main job's evaluation seeds
    objectives = {"latent_only": ObjectiveConfig(),
                  "latent_proprio": ObjectiveConfig(proprio_weight=pc.proprio_weight, proprio_dims=[0, 1])}
    rows = []
    for ck in sorted((Path(args.out) / "checkpoints").glob("step_*")):
        row = {"step": int(ck.name.split("_")[1])}
        for i, (name, obj) in enumerate(objectives.items()):
            res = run_planning_eval(ck, task="reach", episodes=args.episodes, planner=pc.planner, seed=seed,
                                    out_dir=Path(args.out) / f"plan_{ck.name}_{name}", objective=obj,
                                    baselines=not rows and i == 0)
            row[name] = res["success_rate"]
            if res["baselines"]:
                row["baselines"] = res["baselines"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("stage1", "world-model", "probes", "planning"))
    ap.add_argument("--data", help="the push dataset (all but planning, which collects its reach data)")
    ap.add_argument("--train", type=_range, help="training episodes, e.g. 0-26")
    ap.add_argument("--test", type=_range, help="held-out episodes, e.g. 27-35")
    ap.add_argument("--encoder", help="world-model, planning: the Stage-1 run")
    ap.add_argument("--run", help="probes: a stage1 curve run (its checkpoints are probed)")
    ap.add_argument("--episodes", type=int, default=8, help="planning: evaluation episodes per checkpoint")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="world-model: overrides of the main job's world model, e.g. predictor.depth=4 data.window=6")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.what != "planning":
        if not (args.data and args.train and args.test):
            ap.error(f"{args.what} needs --data, --train and --test")
        if set(args.train) & set(args.test):
            ap.error("--train and --test overlap")
    if args.what in ("world-model", "planning") and not args.encoder:
        ap.error(f"{args.what} needs --encoder")
    if args.what == "probes" and not args.run:
        ap.error("probes needs --run")
    logging.basicConfig(level=logging.WARNING)
    run = {"stage1": stage1_curve, "world-model": world_model_curve, "probes": probes_curve, "planning": planning_curve}
    rows = run[args.what](args)
    Path(args.out, "curve.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
