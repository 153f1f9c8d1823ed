"""The README's main job, end to end at toy size (the README command runs it at full size)."""
import html
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_main_job_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cmd = [
        sys.executable, "-m", "ivnext_world.cli.demo", f"out={out}", "collect.episodes=4", "collect.workers=2",
        "collect.env.max_episode_steps=30", "stage1.loop.steps=4", "stage2.loop.steps=2",
        "stage1.loop.batch_size=2", "stage2.loop.batch_size=2", "sheet_episodes=2",
        "world_model.loop.steps=3", "world_model.loop.batch_size=2", "world_model_eval.max_windows=4",
        "world_model_eval.videos=1", "world_model_eval.decode_steps=1", "depth_steps=3",
        "planning.collect.episodes=2", "planning.collect.workers=2", "planning.collect.env.max_episode_steps=12",
        "planning.world_model.loop.steps=2", "planning.world_model.loop.batch_size=2", "planning.episodes=1",
        "world_model_eval.decode_frames=2", "classification.clips_per_class=[1,1,1]", "classification.steps=2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (out / "index.html").read_text()
    for title in ("Simulated robot data", "Stage 1 pretraining", "Stage 2 pretraining", "Linear probe",
                  "Action-conditioned world model", "Decoding held-out frames", "Depth probes",
                  "Planning on the reach task", "Video understanding", "Verdicts"):
        assert title in page
    # no teacher checkpoint was given: Stage 1 trains reconstruction only, and the page says so
    assert "reconstruction only" in page and "RANDOM" not in page
    results = json.loads((out / "results.json").read_text())
    verdicts = results["verdicts"]
    assert set(verdicts) == {"state probe", "world model", "decoder", "depth probe", "planning", "classification"}
    for v in verdicts.values():  # a toy run judges itself like the real one; its labels follow its numbers
        assert v["label"] in ("PASS", "FALLS SHORT", "NOT JUDGED") and v["baseline"]
        assert f'{v["label"]} against {v["baseline"]}' in html.unescape(page)
    assert verdicts["decoder"]["numbers"]["psnr_db"] == results["world_model"]["decoder"]["psnr_db"]
    assert (out / "world_model" / "eval" / "decoded_frames.png").stat().st_size > 5000
    assert set(results["probe"]) == {"random init", "after Stage 1", "after Stage 2"}
    assert results["collect"]["episodes"] == 4
    assert len(results["world_model"]["eval"]["methods"]["world_model"]["l1"]) == 5
    assert len(results["world_model"]["eval"]["action_sensitivity"]) == 5
    assert set(results["world_model"]["eval"]["proprio_error"]) == {"world_model", "hold_last"}
    assert "action sensitivity" in page and "proprio error" in page
    assert {r["encoder"] for r in results["depth"]["rows"]} >= {"random init", "Stage 1", "Stage 2"}
    assert (out / "depth" / "depth_comparison.png").stat().st_size > 5000
    assert 0 <= results["planning"]["success_rate"] <= 1 and results["planning"]["baselines"]["expert"] == 1.0
    rates = results["planning"]["success_rates"]  # DINO-WM's latent + proprio objective, and latent-only
    assert len(rates) == 2 and all(0 <= r <= 1 for r in rates.values())
    assert list((out / "planning" / "proprio").glob("*.mp4"))
    assert (out / "world_model" / "eval" / "rollout_00.gif").stat().st_size > 1000
    for img in ("contact_sheet.png", "stage1/loss_curve.png", "stage2/loss_curve.png",
                "world_model/loss_curve.png", "world_model/eval/error_vs_horizon.png"):
        assert (out / img).stat().st_size > 5000
    assert (out / ".hydra" / "config.yaml").is_file()

    # Re-running resumes: nothing is collected or trained again.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["collect"]["skipped"] == 4


def test_scale_presets_compose_onto_the_main_job():
    from ivnext_world.config import load_config

    cpu = load_config("demo")
    gpu = load_config("demo", ["scale=gpu"])
    assert cpu.scale == "cpu" and gpu.scale == "gpu"
    assert gpu.stage1.model.encoder == "ivnext_vit_small_patch14_224" and gpu.stage1.model.img_size == 224
    # the diffusion decoder is wider than a patch's pixel vector (it must be able to pass x_t through)
    assert gpu.stage1.model.decoder_width > 3 * gpu.stage1.model.patch_size ** 2
    assert gpu.collect.episodes > cpu.collect.episodes and gpu.stage1.loop.steps > cpu.stage1.loop.steps
    mixed = load_config("demo", ["scale=gpu", "stage1.loop.steps=7"])  # later overrides still win
    assert mixed.stage1.loop.steps == 7


def test_probe_split_takes_the_first_episodes_of_each_split_and_never_mixes_them():
    from ivnext_world.pipeline import probe_split, split_episodes

    train, test = split_episodes(100, 0.2)
    assert (train[-1], test[0], len(test)) == (79, 80, 20)
    fit, scored = probe_split(train, test, [27, 9])
    assert fit == list(range(27)) and scored == list(range(80, 89))
    assert probe_split(train, test, None) == (train, test)
    assert probe_split([0, 1], [2], [27, 9]) == ([0, 1], [2])  # fewer episodes than the caps: all of them
    with pytest.raises(ValueError, match="probe_episodes"):
        probe_split(train, test, [27])
    assert load_gpu_probe_episodes() is None  # scale=gpu probes every episode


def load_gpu_probe_episodes():
    from ivnext_world.config import load_config

    return load_config("demo", ["scale=gpu"]).probe_episodes


def test_a_bad_probe_split_fails_before_any_episode_is_collected(tmp_path):
    from ivnext_world.pipeline import DemoConfig, run_demo

    cfg = DemoConfig(out=str(tmp_path / "demo"), probe_episodes=[27])
    with pytest.raises(ValueError, match="probe_episodes"):
        run_demo(cfg)
    assert not (tmp_path / "demo" / "data").exists()
