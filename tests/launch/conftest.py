import cloudpickle
import pytest

from . import _tiny

# Job processes (submitit local or SLURM) cannot import the tests package: ship the tiny jobs by value.
cloudpickle.register_pickle_by_value(_tiny)


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    return _tiny.write_clips(tmp_path_factory.mktemp("clips"))
