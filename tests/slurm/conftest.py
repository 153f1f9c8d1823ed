"""A real one-node SLURM cluster for the whole session (see _cluster.py), or a clear skip."""
import cloudpickle
import pytest

from launch import _tiny  # tests/ is on sys.path (rootdir of the test packages)
from ._cluster import OneNodeCluster, why_unavailable

cloudpickle.register_pickle_by_value(_tiny)  # SLURM job processes cannot import the tests package


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = OneNodeCluster(tmp_path_factory.mktemp("slurm-state")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm_clips(tmp_path_factory):
    return _tiny.write_clips(tmp_path_factory.mktemp("slurm-clips"))
