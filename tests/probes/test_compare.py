"""Encoders x heads comparison: verdicts, the Markdown/JSON table, and the main job's hook."""
import json

import pytest

from ivnext_world.probes.depth.compare import _verdicts, markdown_table, run_depth_probe


def row(encoder, head, abs_rel, d1):
    return {"encoder": encoder, "head": head, "abs_rel": abs_rel, "rmse": 1.0, "d1": d1, "d2": 0.9, "d3": 0.95,
            "si_abs_rel": 0.1, "si_rmse": 0.2, "si_d1": 0.9, "chamfer": None}


def test_beats_random_needs_lower_absrel_and_higher_d1_with_the_same_head():
    rows = [row("random init", "linear", 0.30, 0.50), row("Stage 1", "linear", 0.20, 0.60),
            row("Stage 2", "linear", 0.20, 0.40), row("random init", "dpt", 0.10, 0.90), row("Stage 1", "dpt", 0.15, 0.95)]
    rows[0].update(dyn_abs_rel=0.5, dyn_d1=0.3)
    rows[1].update(dyn_abs_rel=0.6, dyn_d1=0.4)  # better overall, worse on moving pixels
    _verdicts(rows, {"random init": None, "Stage 1": "a", "Stage 2": "b"})
    assert [r["beats_random"] for r in rows] == [None, True, False, None, False]
    assert [r["beats_random_dyn"] for r in rows] == [None, False, None, None, None]
    md = markdown_table(rows)
    assert "| Stage 1 | linear | 0.200 | 1.000 | 0.600 |" in md and md.count("| yes |") == 1
    assert "| - |" in md  # chamfer missing, random rows have no verdict


@pytest.mark.slow
def test_run_depth_probe_writes_table_and_pictures(depth_data, tiny_epd, tmp_path, no_o3d_render):
    res = run_depth_probe({"random init": None, "Stage 1": tiny_epd}, depth_data, [0, 1], [2], tmp_path, steps=3, heads=("linear",))
    assert [(r["encoder"], r["head"]) for r in res["rows"]] == [("random init", "linear"), ("Stage 1", "linear"),
                                                                ("static map (no image)", "-")]
    assert set(res["table"]) == {"random init / linear", "Stage 1 / linear", "static map (no image) / -"}
    table = json.loads((tmp_path / "comparison.json").read_text())
    assert table["test_episodes"] == [2] and table["rows"][1]["beats_random"] in (True, False)
    assert "| Stage 1 | linear |" in (tmp_path / "comparison.md").read_text()
    assert len(res["images"]) == 3 and all((tmp_path / p.split(str(tmp_path))[-1].lstrip("/")).is_file() for p in res["images"])
    # the random-init baseline copies the architecture of the pretrained encoder
    from ivnext_world.probes.depth import load_depth_probe

    _, features, info = load_depth_probe(res["rows"][0]["checkpoint"])
    assert info["encoder"]["spec"] == "random" and info["embed_dim"] == 48 and len(features.encoder.blocks) == 2
