"""Frame-index sampling, manifest parsing and the failure policy, without any video."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ivnext_world.data.failures import BadInput, FailurePolicy, VideoLoadError
from ivnext_world.data.manifest import read_manifest
from ivnext_world.data.sampling import fps_step, frames_needed, sample_indices


def test_frames_needed_and_fps_step():
    assert frames_needed(16, "segment", 4) == 16
    assert frames_needed(16, "dense", 4) == 61
    assert frames_needed(4, "dense", 1.5) == 6
    # Offsets 0, 1.5, 3, 4.5 round half up to 0, 2, 3, 5.
    np.testing.assert_array_equal(sample_indices(6, 4, "dense", 1.5, train=False), [0, 2, 3, 5])
    assert fps_step(2, 60.0, 30) == 4.0 and fps_step(2, 15.0, 30) == 1.0 and fps_step(3, 25.0, None) == 3.0
    with pytest.raises(ValueError, match="sampling"):
        frames_needed(4, "uniform", 1)


def test_dense_and_segment_bounds():
    torch.manual_seed(0)
    for _ in range(50):
        idx = sample_indices(30, 8, "dense", 3, train=True)
        assert idx[0] >= 0 and idx[-1] < 30 and (np.diff(idx) == 3).all()
        seg = sample_indices(30, 7, "segment", train=True)
        assert (np.diff(seg) > 0).all() and seg[-1] < 30
    np.testing.assert_array_equal(sample_indices(10, 4, "dense", 3, train=False), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_indices(3, 5, "segment", train=False), [0, 1, 2, 2, 2])  # padded
    np.testing.assert_array_equal(sample_indices(5, 4, "dense", 2, train=False), [0, 2, 4, 4])  # padded


def test_manifest_header_comments_and_bad_rows(tmp_path):
    (tmp_path / "a.csv").write_text("PATH,split,label\n# a comment\nx.mp4,train,3\n,train,1\ny.mp4,val,\n")
    items, classes = read_manifest(tmp_path / "a.csv")
    assert classes is None
    assert [(i.path.name, i.label, i.error) for i in items] == [("x.mp4", 3, None), ("a.csv:4", -1, "empty path"),
                                                                 ("y.mp4", -1, None)]
    (tmp_path / "b.jsonl").write_text('{"path": "v.mp4", "label": 2}\n{not json\n["v.mp4"]\n')
    items, _ = read_manifest(tmp_path / "b.jsonl")
    assert items[0].path == tmp_path / "v.mp4" and items[0].label == 2
    assert items[1].error.startswith("invalid JSON") and items[2].error.startswith("expected an object")
    with pytest.raises(ValueError, match="use .csv or .jsonl"):
        read_manifest(tmp_path / "list.txt")


def test_policy_gives_up_when_everything_is_bad():
    def load(i):
        raise BadInput(f"v{i}.mp4", "missing file", "no such file")

    policy = FailurePolicy(max_failures=None, max_failure_fraction=None)
    with pytest.warns(UserWarning), pytest.raises(VideoLoadError, match="all 3 items failed.*v0.mp4"):
        policy.load(0, 3, load)
    with pytest.raises(ValueError, match="on_error"):
        FailurePolicy(on_error="ignore")
