"""Sweeps: several configs -> one array (here in process), results gathered into JSON + Markdown."""
import json
from dataclasses import replace

from ivnext_world.launch import LauncherConfig, gather
from ivnext_world.launch.launcher import submit_array

from ._tiny import TinyConfig


def test_local_sweep_is_gathered_into_one_table(tmp_path):
    from ._tiny import train_tiny

    lrs = [0.5, 0.05]
    cfgs = [TinyConfig(out=str(tmp_path / f"lr{i}")) for i in range(2)]
    for c, lr in zip(cfgs, lrs):
        c.loop = replace(c.loop, base_lr=lr)
    submit_array(train_tiny, cfgs, [[f"loop.base_lr={lr}"] for lr in lrs], LauncherConfig(kind="local"), tmp_path, "tiny")
    (tmp_path / "missing").mkdir()
    meta = json.loads((tmp_path / "sweep.json").read_text())
    meta["tasks"].append({"task": 2, "overrides": ["loop.base_lr=9"], "out": str(tmp_path / "missing"), "job_id": None})
    (tmp_path / "sweep.json").write_text(json.dumps(meta))
    rows = gather(tmp_path)
    assert [r["status"] for r in rows] == ["done", "done", "pending"]
    assert rows[0]["digest"] != rows[1]["digest"] and rows[0]["steps"] == rows[1]["steps"] == 8
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[2].startswith("| task | overrides | status |") and "final_loss" in md[2]
    assert md[4].startswith("| 0 | loop.base_lr=0.5 | done |") and md[6].startswith("| 2 | loop.base_lr=9 | pending |")
    assert json.loads((tmp_path / "results.json").read_text())[1]["result"]["steps"] == 8
