"""Does pretraining learn the simulated world? Held-out linear probes of end-effector and puck positions.

Collects noisy-expert push episodes, pretrains the tiny model (Stage 1 with the diffusion decoder,
Stage 1 with the linear decoder as ablation, Stage 2 from the diffusion Stage 1), then fits a ridge
probe on frozen features of the training episodes and reports R^2 on held-out episodes, next to a
random-init encoder. Every run resumes, so re-running after an interruption continues.

    .venv/bin/python scripts/pretrain_evidence.py --out runs/evidence --episodes 40 --steps 600
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ivnext_world.config.schema import CollectConfig, PolicyConfig, PolicyKind
from ivnext_world.pipeline import split_episodes
from ivnext_world.pretrain.epd import build_epd
from ivnext_world.pretrain.run import PretrainConfig, load_epd, run_pretrain
from ivnext_world.probes import state_probe
from ivnext_world.sim import collect
from ivnext_world.train import LoopConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/evidence")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=600, help="Stage-1 steps; Stage 2 runs half as many")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--base-lr", type=float, default=6.4e-2,
                    help="Stage-1 lr at batch 256 (Stage 2: a tenth); 6.4e-2 gives lr 1e-3 at batch 4")
    args = ap.parse_args()
    out = Path(args.out)
    data = collect(CollectConfig(policy=PolicyConfig(kind=PolicyKind.expert, noise_std=0.3), episodes=args.episodes, out=str(out / "data")))
    train_eps, test_eps = split_episodes(args.episodes, 0.25)

    def stage(name, stage_no, steps, lr, loss=None, **model):
        cfg = PretrainConfig(stage=stage_no, out=str(out / name),
                             loop=LoopConfig(steps=steps, batch_size=args.batch, num_workers=2, warmup_steps=steps // 10,
                                             ckpt_every=max(1, steps // 4), base_lr=lr))
        for k, v in model.items():
            setattr(cfg.model, k, v)
        for k, v in (loss or {}).items():
            setattr(cfg.loss, k, v)
        cfg.data.source, cfg.data.episodes = data.out, train_eps
        cfg.init_from = str(out / "stage1_diffusion") if stage_no == 2 else None
        t0 = time.time()
        s = run_pretrain(cfg)
        s["wall_s_this_call"] = round(time.time() - t0, 1)  # small when the run was already complete
        return cfg, s

    runs = {}
    cfg1, runs["stage1_diffusion"] = stage("stage1_diffusion", 1, args.steps, args.base_lr)
    _, runs["stage1_linear"] = stage("stage1_linear", 1, args.steps, args.base_lr, decoder="linear")
    _, runs["stage1_reconstruction_only"] = stage("stage1_reconstruction_only", 1, args.steps, args.base_lr,
                                                  loss={"w_middle": 0.0, "w_final": 0.0})
    _, runs["stage2"] = stage("stage2", 2, args.steps // 2, args.base_lr / 10)

    torch.manual_seed(0)
    encoders = {"random init": build_epd(cfg1.model).encoder}
    encoders.update({f"after {k}": load_epd(s["checkpoint"])[0].encoder for k, s in runs.items()})
    probes = {k: asdict(state_probe(e, data.out, train_eps, test_eps)) for k, e in encoders.items()}
    result = {"data": asdict(data), "train_episodes": train_eps, "test_episodes": test_eps, "runs": runs, "probe": probes}
    (out / "evidence.json").write_text(json.dumps(result, indent=2, default=str))
    lines = ["| encoder | probe R^2 (held out) | per output | pretraining loss first -> last |", "|---|---|---|---|"]
    for k, p in probes.items():
        run = runs.get(k.removeprefix("after "), {})
        loss = f"{run['first_loss']:.3f} -> {run['final_loss']:.3f} ({run['steps']} steps)" if run else "-"
        lines.append(f"| {k} | {p['r2']:.3f} | {', '.join(f'{v:.2f}' for v in p['r2_per_output'])} | {loss} |")
    teacher = runs["stage1_diffusion"]["teacher"]
    lines.append(f"\nimage teacher: {teacher['model']}, pretrained weights: {teacher['pretrained']}")
    (out / "evidence.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
