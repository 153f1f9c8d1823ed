"""The main job's verdicts: each section against its baseline, from the measured numbers alone."""
import json

import pytest

from ivnext_world.verdicts import (
    classification_verdict, decoder_verdict, depth_verdict, planning_verdict, state_probe_verdict, world_model_verdict,
)
from ivnext_world.viz import Report


def test_state_probe_needs_every_pretrained_encoder_clear_of_random_init():
    ok = state_probe_verdict({"random init": 0.70, "after Stage 1": 0.76, "after Stage 2": 0.751})
    assert ok.passed and ok.label == "PASS" and ok.numbers["gain_over_random"]["after Stage 2"] == pytest.approx(0.051)
    short = state_probe_verdict({"random init": 0.70, "after Stage 1": 0.80, "after Stage 2": 0.74})
    assert short.passed is False and short.label == "FALLS SHORT" and "+0.040" in short.detail
    assert state_probe_verdict({"after Stage 1": 0.8}).passed is None


def test_depth_must_beat_random_init_and_the_static_map_on_moving_pixels():
    rows = [{"encoder": "random init", "head": "linear", "dyn_abs_rel": 0.30},
            {"encoder": "Stage 1", "head": "linear", "dyn_abs_rel": 0.20},
            {"encoder": "Stage 1", "head": "dpt", "dyn_abs_rel": 0.50},  # another head: not judged
            {"encoder": "static map (no image)", "head": "-", "dyn_abs_rel": 0.25}]
    assert depth_verdict(rows).passed
    rows[-1]["dyn_abs_rel"] = 0.15  # the static map wins: pretrained features add nothing
    assert depth_verdict(rows).passed is False
    rows[1]["dyn_abs_rel"] = None
    assert depth_verdict(rows).passed is None


def test_world_model_ratio_from_horizon_two_and_action_sensitivity():
    v = world_model_verdict([1, 2, 3], [0.95, 0.85, 0.80], [1.0, 1.0, 1.0], [0.01, 0.02, None])
    assert v.passed and "h=2" in v.detail and v.numbers["ratio_to_copy_last"][0] == pytest.approx(0.95)
    assert world_model_verdict([1, 2, 3], [0.5, 0.85, 0.91], [1.0, 1.0, 1.0], [0.01, 0.02, 0.03]).passed is False
    assert world_model_verdict([1, 2], [0.5, 0.5], [1.0, 1.0], [0.0, 0.0]).passed is False  # ignores actions
    assert world_model_verdict([1], [0.5], [1.0], [0.1]).passed is None


def test_decoder_planning_and_classification_bars():
    assert decoder_verdict(22.5, 27.0).passed and decoder_verdict(21.9).passed is False
    assert decoder_verdict(None).passed is None
    assert planning_verdict(0.8, 0.1, 1.0).passed and planning_verdict(0.75, 0.1).passed is False
    assert planning_verdict(None).passed is None
    v = classification_verdict({"single frame": 0.5, "Stage 1": 0.6, "random init": 0.55}, "single frame")
    assert v.passed and v.numbers["best"] == "Stage 1"


def test_report_shows_the_verdict_and_stores_it(tmp_path):
    report = Report(tmp_path, "t")
    report.add("probe", text="x", verdict=state_probe_verdict({"random init": 0.7, "S1": 0.9}))
    report.add("wm", verdict=world_model_verdict([1, 2], [1.0, 1.0], [1.0, 1.0], [0.1, 0.1]))
    page = report.write().read_text()
    assert 'class="pass">PASS against random init + 0.05 R^2' in page
    assert 'class="short">FALLS SHORT against copy-last' in page
    stored = json.loads((tmp_path / "report.json").read_text())
    assert [s["verdict"]["label"] for s in stored] == ["PASS", "FALLS SHORT"]
