"""The main job's classification section on the simulator's temporal benchmark (``classification_section``)."""
import json
from pathlib import Path

import pytest

from ivnext_world.probes.classify import classification_section


def test_section_tables_every_encoder_and_the_single_frame_baseline(tiny_epd, tmp_path):
    encoders = {"random init": None, "Stage 1": str(tiny_epd), "Stage 2": str(tiny_epd)}
    res = classification_section(None, encoders, tmp_path, clips_per_class=(1, 1, 1), steps=2, head_depth=2)
    assert list(res["table"]) == ["random init", "Stage 1", "Stage 2", "single frame (Stage 2, centre frame)"]
    assert all(v.startswith("top-1 ") and v.endswith("(chance 12%)") for v in res["table"].values())
    assert len(res["images"]) == 1 and Path(res["images"][0]).is_file() and res["images"][0].endswith(".png")
    results = json.loads(json.dumps(res["results"]))  # JSON-able
    assert results["benchmark"]["clips"] == {"train": 8, "val": 8, "test": 8} and results["best"] in encoders
    for row in results["rows"]:
        assert 0.0 <= row["attentive"] <= 1.0 and 0.0 <= row["val_top1"] <= 1.0 and row["split"] == "test"
    # clips at half the encoder's 56 px (28 px: 2x2 patches of 14), its 4 frames; the single-frame row sees one
    per_row = [json.loads(Path(r["results"]).read_text()) for r in results["rows"]]
    assert {r["views"]["resolution"] for r in per_row} == {28} and [r["tokens_per_clip"] for r in per_row] == [16, 16, 16, 4]
    assert per_row[3]["backbone"]["spec"].startswith("frame:") and "Confusion matrix" in res["text"]
    # a rerun reuses the benchmark, the token caches and the trained heads: the same numbers
    again = classification_section(None, encoders, tmp_path, clips_per_class=(1, 1, 1), steps=2, head_depth=2)
    assert again["table"] == res["table"]
    with pytest.raises(ValueError, match="other settings"):  # the same folder, another benchmark
        classification_section(None, encoders, tmp_path, clips_per_class=(2, 1, 1), steps=2, head_depth=2)


def test_bad_input_fails_before_rendering_or_training(tiny_epd, tmp_path):
    with pytest.raises(ValueError, match="at least one pretraining checkpoint"):
        classification_section(None, {"random init": None}, tmp_path)
    with pytest.raises(FileNotFoundError, match="no benchmark.json"):
        classification_section(tmp_path, {"random init": None, "Stage 1": str(tiny_epd)}, tmp_path)
    with pytest.raises(ValueError, match="unknown baselines"):
        classification_section(None, {"Stage 1": str(tiny_epd)}, tmp_path, baselines=("two frames",))
    assert not any(tmp_path.iterdir())
