"""Atomic writes, contact sheets and the run report."""
import json
import os

import numpy as np
import pytest

from ivnext_world.utils import atomic_write_text
from ivnext_world.viz import Report, contact_sheet


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "f.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new content")
    assert p.read_text() == "new content"
    assert sorted(os.listdir(p.parent)) == ["f.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]


def test_contact_sheet_writes_png_with_content(tmp_path):
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8) for _ in range(2)]
    depth = [rng.uniform(0.5, 2.0, (3, 16, 16)).astype(np.float32) for _ in range(2)]
    path = contact_sheet(rgb, depth, ["ep 0", "ep 1"], tmp_path / "sheet.png", title="t")
    import imageio.v3 as iio

    img = iio.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 10


def test_contact_sheet_rejects_mismatched_inputs(tmp_path):
    rgb = [np.zeros((3, 8, 8, 3), np.uint8)]
    with pytest.raises(ValueError, match="depth maps"):
        contact_sheet(rgb, [np.zeros((2, 8, 8), np.float32)], ["e"], tmp_path / "s.png")
    with pytest.raises(ValueError, match="one entry per episode"):
        contact_sheet(rgb, [], ["e"], tmp_path / "s.png")


def test_report_links_assets_relative_and_escapes(tmp_path):
    img = tmp_path / "plots" / "x.png"
    img.parent.mkdir()
    img.write_bytes(b"png")
    r = Report(tmp_path, "Run <1>")
    r.add("Data", text="a & b", table={"episodes": 3}, images=[img], warning="random teacher")
    page = r.write().read_text()
    assert 'src="plots/x.png"' in page and "Run &lt;1&gt;" in page and "a &amp; b" in page
    assert json.loads((tmp_path / "report.json").read_text())[0]["table"] == {"episodes": "3"}
    with pytest.raises(FileNotFoundError):
        r.add("Missing", images=[tmp_path / "nope.png"])
