from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def video_manifest(tmp_path_factory) -> Path:
    """Six real H.264 clips of a moving bright square on a gradient (decoded by decord in the tests)."""
    from launch._tiny import write_clips  # tests/ is on sys.path (rootdir conftest)

    return write_clips(tmp_path_factory.mktemp("clips"), 6)
