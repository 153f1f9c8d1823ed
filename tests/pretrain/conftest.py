from pathlib import Path

import numpy as np
import pytest

from ivnext_world.data.video_io import encode_mp4


@pytest.fixture(scope="session")
def video_manifest(tmp_path_factory) -> Path:
    """Six real H.264 clips of a moving bright square on a gradient (decoded by decord in the tests)."""
    root = tmp_path_factory.mktemp("clips")
    yy, xx = np.mgrid[0:64, 0:64]
    rows = []
    for i in range(6):
        frames = np.zeros((16, 64, 64, 3), np.uint8)
        frames[..., 0] = (xx * 3) % 256
        frames[..., 1] = (yy * 3 + 40 * i) % 256
        for t in range(16):
            y, x = (4 + 2 * t + 5 * i) % 48, (3 * t + 7 * i) % 48
            frames[t, y:y + 14, x:x + 14] = 255
        encode_mp4(root / f"clip{i}.mp4", frames, fps=10)
        rows.append(f"clip{i}.mp4,{i % 2}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv"
