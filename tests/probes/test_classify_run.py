"""``run_classify`` end to end on tiny videos: outputs, multi-view averaging, exact resume, CLI and launcher."""
import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from ivnext_world.data import encode_mp4
from ivnext_world.data.manifest import VideoItem
from ivnext_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ivnext_world.data.video_io import open_video, read_frames
from ivnext_world.probes.classify import ClipViews, HeadGrid, average_views, grid_view_logits, load_backbone, run_classify
from ivnext_world.probes.classify.features import view_batches
from ivnext_world.train import STOP, Preempted, load_weights

from ._classify_helpers import TINY_ENCODER, make_videos, tiny_cfg


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("cls_run_videos"))


def test_run_writes_metrics_confusion_and_tensorboard(videos, tmp_path):
    summary = run_classify(tiny_cfg(videos, tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["selected"]) == {"linear", "pooler", "attentive", "best"} and res["selected_on"] == "val"
    best = res["selected"]["best"]
    assert best["head"] in res["heads"] and set(best["test"]["per_class"]) == {"left", "right"}
    assert np.array(best["test"]["confusion"]).sum() == 4 and best["test"]["top5"] == 1.0  # top-5 of 2 classes
    assert (tmp_path / "confusion_best.png").stat().st_size > 0
    # the chosen head of each kind has the best validation top-1 of its kind
    for kind in ("linear", "pooler", "attentive"):
        vals = [r["val_top1"] for r in res["heads"].values() if r["kind"] == kind]
        assert res["selected"][kind]["val_top1"] == max(vals)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Tags()["scalars"]
    assert "eval/test/selected_top1/best" in tags and "train/loss" in tags
    assert summary["steps"] == 4 and summary["backbone"] == "random"
    # a rerun resumes (nothing left to train) and reuses the token cache
    again = run_classify(tiny_cfg(videos, tmp_path))
    assert again["best_top1"] == summary["best_top1"] and again["final_loss"] == summary["final_loss"]


def test_multi_view_averaging_equals_the_mean_of_single_view_logits(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (20, 32, 56, 3), dtype=np.uint8)  # non-square: the 3 crops differ
    encode_mp4(tmp_path / "v.mp4", frames, fps=10)
    item = VideoItem(tmp_path / "v.mp4", label=1, where="v")
    bb = load_backbone("random", num_frames=4, img_size=32, random_model=vars(TINY_ENCODER))
    torch.manual_seed(0)
    grid = HeadGrid(bb.embed_dim, 3, ["linear", "attentive"], [1e-3], [0.0], num_heads=2, depth=2).eval()
    views = ClipViews([item], num_frames=4, frame_step=2, resolution=32, mean=bb.mean, std=bb.std, clips=2, crops=3)
    logits, labels, _ = grid_view_logits(grid, view_batches(bb, views, batch_size=1))  # (H, 1, 6, C)
    assert logits.shape == (2, 1, 6, 3) and labels.tolist() == [1]

    # the six views built by hand: clip starts 0 and 13 (20 frames, span 7), crops at x = 0, 12, 24
    reader = open_video(tmp_path / "v.mp4")
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    single = []
    for start in (0, 13):
        clip = torch.from_numpy(read_frames(reader, tmp_path / "v.mp4", start + 2 * np.arange(4))).permute(3, 0, 1, 2).float() / 255
        for x in (0, 12, 24):
            view = ((clip[..., x:x + 32] - mean) / std)[None]  # (1, C, T, 32, 32)
            with torch.no_grad():
                single.append(grid(bb(view))[:, 0])  # (H, C)
    single = torch.stack(single, 1)  # (H, 6, C)
    assert torch.allclose(logits[:, 0], single, atol=1e-5)
    assert torch.allclose(average_views(logits, "logits")[:, 0], single.mean(1), atol=1e-5)
    assert torch.allclose(average_views(logits, "softmax")[:, 0], single.softmax(-1).mean(1), atol=1e-6)


def test_resume_is_exact(videos, tmp_path, monkeypatch):
    run_classify(tiny_cfg(videos, tmp_path / "straight", steps=6))

    from ivnext_world.probes.classify import train as train_mod

    calls = {"n": 0}
    original = train_mod.ClassifyObjective.__call__

    def stop_after_three(self, grid, batch, gen):
        calls["n"] += 1
        if calls["n"] == 3:
            STOP.set()  # what the launcher's signal handler does on preemption
        return original(self, grid, batch, gen)

    monkeypatch.setattr(train_mod.ClassifyObjective, "__call__", stop_after_three)
    try:
        with pytest.raises(Preempted):
            run_classify(tiny_cfg(videos, tmp_path / "resumed", steps=6))
    finally:
        STOP.clear()
    monkeypatch.setattr(train_mod.ClassifyObjective, "__call__", original)
    assert (tmp_path / "resumed" / "checkpoints" / "step_00000003").is_dir()
    run_classify(tiny_cfg(videos, tmp_path / "resumed", steps=6))

    a = json.loads((tmp_path / "straight" / "results.json").read_text())
    b = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert a["heads"] == b["heads"] and a["final_loss"] == b["final_loss"]
    grids = []
    for run in ("straight", "resumed"):
        ckpt = tmp_path / run / "checkpoints" / "step_00000006"
        g = HeadGrid.from_config(json.loads((ckpt / "state.json").read_text())["extra"]["classify"]["grid"])
        load_weights(g, ckpt / "model.safetensors")
        grids.append(g.state_dict())
    assert all(torch.equal(grids[0][k], grids[1][k]) for k in grids[0])


def test_online_features_train_the_same_grid(videos, tmp_path):
    cfg = tiny_cfg(videos, tmp_path, steps=2)
    cfg.features = "online"
    summary = run_classify(cfg)
    assert summary["steps"] == 2 and not (tmp_path / "features").exists()
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["selected"]["best"]["test"]["videos"] == 4 and res["features"] == "online"


def test_cli_reports_bad_labels_in_one_line(videos, tmp_path):
    (tmp_path / "classes.txt").write_text("left\nright\nup\n")
    cmd = [sys.executable, "-m", "ivnext_world.cli.classify", f"out={tmp_path / 'run'}", f"data.train={videos / 'train.csv'}",
           f"data.val={videos / 'val.csv'}", f"data.test={videos / 'test.csv'}", f"data.classes={tmp_path / 'classes.txt'}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "ivnext-classify: error: class ['up'] has no training clips" in p.stderr
    assert "Traceback" not in p.stderr


def test_launcher_knows_the_classify_job(videos, tmp_path):
    from ivnext_world.launch.__main__ import main as launch_main
    from ivnext_world.launch.jobs import job_spec

    assert job_spec("classify").function() is run_classify
    rc = launch_main(["classify", "launcher=slurm", f"out={tmp_path}", "classify_preset=vjepa2_ssv2", "--dry-run"])
    assert rc == 0


@pytest.mark.slow
def test_main_job_section_with_every_head_kind_and_both_baselines(tiny_epd, tmp_path):
    """``classification_section`` at its fullest: three head kinds per row, the per-frame ViT and the
    single-frame baselines, the benchmark rendered at the given size."""
    from ivnext_world.probes.classify import classification_section

    res = classification_section(None, {"random init": None, "Stage 1": str(tiny_epd)}, tmp_path, resolution=56,
                                 clips_per_class=(1, 1, 1), kinds=("linear", "pooler", "attentive"), head_depth=2,
                                 steps=2, baselines=("per-frame ViT", "single frame"))
    rows = res["results"]["rows"]
    names = [r["backbone"] for r in rows]
    assert names == ["random init", "Stage 1", "per-frame ViT (random init)", "single frame (Stage 1, centre frame)"]
    assert all(set(("linear", "pooler", "attentive")) <= set(r) for r in rows)
    assert (tmp_path / "bench" / "benchmark.json").is_file() and (tmp_path / "comparison.md").is_file()
    assert set(res["table"]) == set(names) and all(v.startswith("linear ") for v in res["table"].values())
    assert json.loads((Path(rows[0]["results"])).read_text())["views"]["resolution"] == 56
