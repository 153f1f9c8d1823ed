"""Success-rate evaluation of latent planners (and baselines, and BC policies) in the simulator.

For each of ``episodes`` seeded episodes (env seed ``seed + i``), the goal image is rendered from
the episode's own goal configuration (``render_goal``: built-in tasks, or the adapter's ``goal``
function of an ``env.id`` env), every method runs the episode from the same reset, and success = the
task's success criterion was met at some step within the time limit
(the episode stops there when ``stop_on_success``: planning is the expensive part). Writes
``results.json``, ``results.md``, a success-vs-planning-budget plot and a few episode videos
(observation | goal | what the world model imagines at the end of the current plan).

    ivnext-plan-eval world_model=outputs/world_model task=reach episodes=20 methods=[cem,mppi,random,expert]
    ivnext-plan-eval world_model=outputs/wm_pusht env.id=gym_pusht/PushT-v0 image_size=64 methods=[cem,random]
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..config.schema import GymEnvConfig, Task
from .agent import ObjectiveConfig, PlanningAgent
from .cem import CEMConfig
from .gradient import GradientConfig
from .mppi import MPPIConfig

log = logging.getLogger(__name__)

PLANNER_METHODS = ("cem", "mppi", "gradient")
BASELINES = ("random", "expert")
BC_METHODS = ("bc_latent", "bc_pixels")


@dataclass
class SweepConfig:
    """Success vs planning budget: ``planner`` re-evaluated with ``param`` set to each value."""

    planner: str = "cem"
    param: str = "iterations"  # any field of that planner's config (samples, iterations, horizon...)
    values: List[int] = field(default_factory=list)  # empty: no sweep
    episodes: Optional[int] = None  # None: all episodes


@dataclass
class PlanEvalConfig:
    world_model: str = "outputs/world_model"  # world-model run folder (WorldModel.load)
    # Where the world model's backbone is now, if it is not our encoder and its files moved (a spec of
    # the same kind, e.g. official:/new/place/file.pth); None: the path stored in the run.
    encoder: Optional[str] = None
    task: Task = Task.reach
    # Any gymnasium id instead of `task` (env.id, env.kwargs, env.adapter as in ivnext-collect); the
    # adapter needs a goal function (env.adapter.goal) for the goal image, and a success source.
    env: GymEnvConfig = field(default_factory=GymEnvConfig)
    episodes: int = 10
    seed: int = 1000  # episode i resets with seed + i; keep clear of the training data's seeds
    image_size: int = 128  # as the world model's training data
    max_episode_steps: Optional[int] = None  # None: the task's registered limit
    methods: List[str] = field(default_factory=lambda: ["cem", "random", "expert"])
    cem: CEMConfig = field(default_factory=CEMConfig)
    mppi: MPPIConfig = field(default_factory=MPPIConfig)
    gradient: GradientConfig = field(default_factory=GradientConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    execute: int = 1  # world-model steps executed per plan (DINO-WM: 5); x frame_skip env actions
    context_frames: int = 1
    stop_on_success: bool = True
    bc_latent: Optional[str] = None  # BC run folders (ivnext-bc), needed by methods bc_latent / bc_pixels
    bc_pixels: Optional[str] = None
    sweep: SweepConfig = field(default_factory=SweepConfig)
    videos: int = 2  # episodes recorded per planner
    video_view: str = "auto"  # auto | decode | nearest | none: how the imagined frame is shown
    bank_frames: int = 400  # frames of the training data encoded for the nearest-neighbour view
    device: str = "cpu"
    precision: str = "auto"  # world-model inference: auto (bf16 autocast on a bf16 GPU, else fp32) | fp32 | bf16
    out: str = "outputs/plan_eval"

    def __post_init__(self):
        known = set(PLANNER_METHODS + BASELINES + BC_METHODS)
        bad = [m for m in self.methods if m not in known]
        if bad:
            raise ValueError(f"unknown methods {bad}; expected some of {sorted(known)}")
        from ..world_model.precision import check_precision

        check_precision(self.precision)
        if self.video_view not in ("auto", "decode", "nearest", "none"):
            raise ValueError(f"video_view must be auto|decode|nearest|none, got {self.video_view!r}")


def make_env(cfg: PlanEvalConfig):
    from ..sim.collection import make_env as _make

    return _make(cfg.task, cfg.image_size, cfg.max_episode_steps, env_id=cfg.env.id, kwargs=cfg.env.kwargs,
                 adapter=cfg.env.adapter)


def _render_goal(env) -> dict:
    try:
        render_goal = env.get_wrapper_attr("render_goal")
    except AttributeError:
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ValueError(f"{name} has no goal image for goal-conditioned planning: set env.adapter.goal="
                         "package.module:function (function(adapter) -> goal observation dict)") from None
    return render_goal()


def build_agent(cfg: PlanEvalConfig, wm, name: str, env, overrides: dict | None = None) -> PlanningAgent:
    from . import PLANNERS

    cls, _ = PLANNERS[name]
    pcfg = getattr(cfg, name)
    if overrides:
        pcfg = type(pcfg)(**{**asdict(pcfg), **overrides})
    return PlanningAgent(wm, cls(pcfg), env.action_space, cfg.objective, execute=min(cfg.execute, pcfg.horizon),
                         context_frames=cfg.context_frames, seed=cfg.seed)


def run_episode(env, policy, seed: int, stop_on_success: bool, recorder=None) -> dict:
    obs, info = env.reset(seed=seed)
    goal = _render_goal(env)
    start = _wrapper_attr(env, "start_observation")  # a goal function that moved the start (PushT warm-up)
    if start is not None:
        obs = start
    policy.reset(goal["rgb"], goal.get("proprio"))
    success, steps, t0 = bool(info.get("is_success", False)), 0, time.perf_counter()
    truncated = terminated = False
    while not (terminated or truncated) and not (success and stop_on_success):
        action = policy(obs)
        if recorder is not None:
            recorder.add(obs["rgb"], goal["rgb"], policy)
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        success = success or bool(info.get("is_success", False))
    if recorder is not None:
        recorder.add(obs["rgb"], goal["rgb"], policy)
    dt = time.perf_counter() - t0
    final = {k: float(v) for k, v in info.items()  # the env's scalar task measures at the end
             if isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) and k != "distance"}
    return {"seed": seed, "success": success, "steps": steps, "final_distance": float(info.get("distance", np.nan)),
            "sec_per_action": dt / max(steps, 1), "plans": getattr(policy, "num_plans", 0), "final_info": final}


def _wrapper_attr(env, name: str):
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return None


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "episodes": n,
        "successes": int(sum(r["success"] for r in rows)),
        "success_rate": float(np.mean([r["success"] for r in rows])) if n else float("nan"),
        "mean_final_distance": float(np.mean([r["final_distance"] for r in rows])) if n else float("nan"),
        "mean_steps": float(np.mean([r["steps"] for r in rows])) if n else float("nan"),
        "sec_per_action": float(np.mean([r["sec_per_action"] for r in rows])) if n else float("nan"),
        "episodes_detail": rows,
    }


def world_model_budget(run: str | Path) -> dict:
    """What the world model was trained on (from its run folder): steps, data, episodes."""
    from ..train.checkpoint import latest_checkpoint

    run = Path(run)
    out: dict = {"run": str(run)}
    summary = run / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        out.update(steps=s.get("steps"), final_loss=s.get("final_loss"))
    ckpt = latest_checkpoint(run / "checkpoints") if (run / "checkpoints").exists() else None
    if ckpt is not None:
        extra = json.loads((Path(ckpt) / "state.json").read_text())["extra"].get("world_model", {})
        tc = extra.get("train_config", {})
        data = tc.get("data", {})
        out.update(step=json.loads((Path(ckpt) / "state.json").read_text())["step"], data=data.get("source"),
                   episodes=data.get("episodes"), batch_size=tc.get("loop", {}).get("batch_size"),
                   pool=extra.get("pool"), frame_skip=extra.get("frame_skip", 1), predictor=extra.get("predictor"),
                   encoder=extra.get("encoder_checkpoint") or (extra.get("backbone") or {}).get("spec"))
        try:
            from ..data import LeRobotDataset

            meta = LeRobotDataset(data.get("source"))
            eps = data.get("episodes") or meta.episode_indices
            out.update(num_episodes=len(eps), frames=int(sum(meta.episode_length(e) for e in eps)))
        except Exception as e:  # the data may have moved; the budget is still reported
            out["data_error"] = str(e)
    return out


def run_plan_eval(cfg: PlanEvalConfig) -> dict:
    """Evaluate every method of ``cfg.methods`` on the same seeded episodes; writes the report files."""
    from ..world_model import WorldModel
    from .report import EpisodeRecorder, ImaginedView, write_reports

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    needs_wm = any(m in PLANNER_METHODS for m in cfg.methods) or cfg.sweep.values or "bc_latent" in cfg.methods
    wm = WorldModel.load(cfg.world_model, cfg.device, cfg.precision, encoder=cfg.encoder) if needs_wm else None
    env = make_env(cfg)
    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    view = ImaginedView.build(wm, cfg.video_view, cfg.bank_frames, cfg.world_model) if wm is not None else None
    results: dict = {"task": cfg.env.id or str(cfg.task), "episodes": cfg.episodes, "seeds": seeds,
                     "distance_unit": "m" if cfg.env.id is None else "info['distance'] of the env",
                     "success": "criterion met at any step within the time limit",
                     "world_model": world_model_budget(cfg.world_model) if wm is not None else None,
                     "config": _plain(asdict(cfg)), "methods": {}, "videos": []}
    bc_cache: dict = {}
    try:
        for name in cfg.methods:
            rows = []
            for i, seed in enumerate(seeds):
                policy = _policy(cfg, wm, name, env, seed, bc_cache)
                rec = EpisodeRecorder(view) if (name in PLANNER_METHODS and i < cfg.videos) else None
                rows.append(run_episode(env, policy, seed, cfg.stop_on_success, rec))
                if rec is not None:
                    results["videos"].append(str(rec.write(out / f"video_{name}_ep{i}.mp4")))
                log.debug("%s episode %d/%d: %s", name, i + 1, len(seeds), rows[-1])
            results["methods"][name] = summarise(rows)
            log.info("%s: success %.0f%%", name, 100 * results["methods"][name]["success_rate"])
            write_reports(results, out)  # after every method: a crash later keeps what is done
        if cfg.sweep.values:
            results["sweep"] = _sweep(cfg, wm, env, seeds)
    finally:
        env.close()
    write_reports(results, out)
    return results


def _sweep(cfg: PlanEvalConfig, wm, env, seeds) -> dict:
    sw = cfg.sweep
    if sw.planner not in PLANNER_METHODS:
        raise ValueError(f"sweep.planner must be one of {PLANNER_METHODS}, got {sw.planner!r}")
    seeds = seeds[: sw.episodes or len(seeds)]
    points = []
    for v in sw.values:
        rows = [run_episode(env, build_agent(cfg, wm, sw.planner, env, {sw.param: v}), s, cfg.stop_on_success)
                for s in seeds]
        s = summarise(rows)
        points.append({"value": v, "success_rate": s["success_rate"], "sec_per_action": s["sec_per_action"]})
        log.info("sweep %s %s=%s: success %.0f%%", sw.planner, sw.param, v, 100 * s["success_rate"])
    return {"planner": sw.planner, "param": sw.param, "episodes": len(seeds), "points": points}


def _policy(cfg: PlanEvalConfig, wm, name: str, env, seed: int, bc_cache: dict):
    from .baselines import make_baseline

    if name in PLANNER_METHODS:
        return build_agent(cfg, wm, name, env)
    if name in BASELINES:
        return make_baseline(name, env, seed)
    from ..policies import load_bc_policy

    path = getattr(cfg, name)
    if path is None:
        raise ValueError(f"method {name} needs {name}=<BC run folder> (train one with ivnext-bc)")
    if name not in bc_cache:
        bc_cache[name] = load_bc_policy(path, wm=wm, action_space=env.action_space)
    return bc_cache[name]


def _plain(x):
    return json.loads(json.dumps(x, default=str))


def run_planning_eval(world_model_dir: str | Path, task: str = "reach", episodes: int = 4,
                      out_dir: str | Path = "outputs/plan_eval", planner: str = "cem", seed: int = 1000,
                      objective: ObjectiveConfig | None = None, baselines: bool = True) -> dict:
    """The main job's short planning evaluation (CPU, a few minutes): ``planner`` under MPC with a
    small budget (64 samples x horizon 5 x 3 iterations, 5 actions per plan) on ``episodes`` seeded
    episodes, with the random and scripted-expert baselines (``baselines``), one episode video.

    Returns ``{"success_rate", "baselines": {"random", "expert"} (or {}), "video", "results_md", "results"}``.
    """
    budgets = {"cem": CEMConfig(samples=64, topk=8, iterations=3), "mppi": MPPIConfig(samples=64, elites=8, iterations=3),
               "gradient": GradientConfig(iterations=5, restarts=4)}
    if planner not in budgets:
        raise ValueError(f"planner must be one of {sorted(budgets)}, got {planner!r}")
    refs = ["random", "expert"] if baselines else []
    cfg = PlanEvalConfig(world_model=str(world_model_dir), task=Task(task), episodes=episodes, seed=seed,
                         methods=[planner, *refs], execute=5, videos=1, bank_frames=200, out=str(out_dir),
                         objective=objective or ObjectiveConfig(),
                         **{planner: budgets[planner]})
    results = run_plan_eval(cfg)
    m = results["methods"]
    return {"success_rate": m[planner]["success_rate"],
            "baselines": {k: m[k]["success_rate"] for k in refs},
            "video": results["videos"][0] if results["videos"] else None,
            "results_md": str(Path(out_dir) / "results.md"), "results": results}
