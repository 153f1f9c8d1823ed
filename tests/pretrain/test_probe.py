import numpy as np
import pytest

from ivnext_world.probes import ridge_probe


def test_ridge_probe_recovers_a_linear_map_and_ignores_constant_outputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20))
    w = rng.normal(size=(20, 2))
    y = np.concatenate([x @ w + 0.01 * rng.normal(size=(400, 2)), np.full((400, 1), 0.3)], 1)
    res = ridge_probe(x[:300], y[:300], x[300:], y[300:])
    assert res["r2"] > 0.99 and res["outputs"] == [0, 1]
    noise = ridge_probe(rng.normal(size=(300, 20)), y[:300], rng.normal(size=(100, 20)), y[300:])
    assert noise["r2"] < 0.2


def test_ridge_probe_rejects_all_constant_targets():
    with pytest.raises(ValueError, match="constant"):
        ridge_probe(np.ones((10, 3)), np.zeros((10, 2)), np.ones((5, 3)), np.zeros((5, 2)))
