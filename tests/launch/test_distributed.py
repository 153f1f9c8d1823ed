"""Two processes on the CPU over gloo, through the launcher's own path (submitit job env -> DDP)."""
import json

import pytest

from ivnext_world.launch import LauncherConfig, submit

from ._tiny import TinyConfig, train_tiny


@pytest.mark.slow
def test_two_ranks_over_gloo_end_with_identical_weights(tmp_path):
    lc = LauncherConfig(kind="submitit_local", tasks_per_node=2, cpus_per_task=1, time="5")
    launched = submit(train_tiny, [TinyConfig(out=str(tmp_path / "ddp"))], lc, "tiny", tmp_path / "submitit")
    ranks = launched.wait()[0]  # one entry per task
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["result"]["world_size"] == 2 and r["result"]["steps"] == 8 for r in ranks)
    # train_tiny's objective calls the model's parts, not its forward (as the pretraining objectives
    # do): gradients are still averaged over ranks, so both end with the same weights.
    assert ranks[0]["result"]["digest"] == ranks[1]["result"]["digest"]
    # ...and the ranks really trained on different data: their local losses differ.
    assert ranks[0]["result"]["final_loss"] != ranks[1]["result"]["final_loss"]
    saved = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert saved["rank"] == 0 and saved["result"]["digest"] == ranks[0]["result"]["digest"]
    env = json.loads((tmp_path / "ddp" / "launch" / "env.json").read_text())
    assert env["backend"] == "gloo" and env["source"] == "submitit" and env["world_size"] == 2
