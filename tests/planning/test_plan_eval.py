"""The evaluation command end to end on a tiny untrained world model: every method, 2 episodes."""
import json

import pytest
from omegaconf import OmegaConf

from ivnext_world.config import load_config

TINY_BUDGET = ["cem.samples=8", "cem.topk=2", "cem.iterations=2", "cem.horizon=3", "mppi.samples=8", "mppi.elites=2",
               "mppi.iterations=2", "mppi.horizon=3", "gradient.iterations=2", "gradient.restarts=2", "gradient.horizon=3"]


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    from ivnext_world.sim import collect

    out = tmp_path_factory.mktemp("demos") / "reach"
    cfg = load_config("collect", [f"out={out}", "env.task=reach", "env.image_size=64", "env.max_episode_steps=5",
                                  "episodes=2", "workers=0", "policy.noise_std=0.1"])
    return collect(OmegaConf.to_object(cfg)).out


@pytest.mark.slow
def test_plan_eval_runs_end_to_end(tiny_wm_run, demos, tmp_path):
    from ivnext_world.planning.evaluate import run_plan_eval
    from ivnext_world.policies import train_bc

    bc = {}
    for kind in ("latent", "pixels"):
        cfg = load_config("bc", [f"data={demos}", f"features={kind}", f"encoder={tiny_wm_run}", "pixel_size=32",
                                 "loop.steps=3", "loop.batch_size=4", "loop.log_every=1", f"out={tmp_path / kind}"])
        summary = train_bc(OmegaConf.to_object(cfg))
        assert summary["steps"] == 3 and summary["samples"] == 10
        bc[kind] = tmp_path / kind
    out = tmp_path / "eval"
    cfg = load_config("plan_eval", [
        f"world_model={tiny_wm_run}", "task=reach", "episodes=2", "image_size=64",
        "max_episode_steps=4", "methods=[cem,mppi,gradient,random,expert,bc_latent,bc_pixels]", "execute=2",
        f"bc_latent={bc['latent']}", f"bc_pixels={bc['pixels']}", "sweep.values=[1,2]", "sweep.episodes=1",
        "videos=1", "objective.proprio_weight=0.5", "objective.proprio_dims=[0,1]", f"out={out}", *TINY_BUDGET])
    results = run_plan_eval(OmegaConf.to_object(cfg))
    assert set(results["methods"]) == {"cem", "mppi", "gradient", "random", "expert", "bc_latent", "bc_pixels"}
    for name, m in results["methods"].items():
        assert m["episodes"] == 2 and 0.0 <= m["success_rate"] <= 1.0
        assert [r["seed"] for r in m["episodes_detail"]] == [1000, 1001]
    assert results["methods"]["cem"]["episodes_detail"][0]["plans"] == 2  # 4 steps, 2 executed per plan
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["expert"]["successes"] == results["methods"]["expert"]["successes"]
    assert [p["value"] for p in saved["sweep"]["points"]] == [1, 2]
    assert (out / "success_vs_budget.png").stat().st_size > 0
    assert "| cem |" in (out / "results.md").read_text()
    videos = sorted(p.name for p in out.glob("*.mp4"))
    assert videos == ["video_cem_ep0.mp4", "video_gradient_ep0.mp4", "video_mppi_ep0.mp4"]


def test_plan_eval_config_rejects_unknown_methods_and_keys():
    with pytest.raises(Exception, match="unknown methods"):
        OmegaConf.to_object(load_config("plan_eval", ["methods=[cem,dreamer]"]))
    with pytest.raises(Exception, match="samplez"):
        load_config("plan_eval", ["+cem.samplez=3"])


@pytest.mark.parametrize("scene", ["front", "topdown"])
def test_push_cost_landscape_script_scores_rendered_partial_solutions(tiny_wm_run, scene):
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "push_cost_landscape.py"
    out = subprocess.run([sys.executable, str(script), "--world-model", str(tiny_wm_run), "--episodes", "2",
                          "--image-size", "56", "--scene", scene], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    costs = [float(x) for x in re.findall(r"^\s+\S.*?\s(\d+\.\d+)$", out.stdout, re.M)]
    assert len(costs) == 3 and all(c > 0 for c in costs), out.stdout  # none of them is the goal image itself
    assert re.search(r"closer one in \d/2 episodes", out.stdout) and f"scene {scene}:" in out.stdout
