"""scripts/latent_motion_ridge.py: the diagnostic tells latents whose change follows the actions from
latents whose change does not (synthetic episodes with a known answer)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "latent_motion_ridge.py"


def _load():
    spec = importlib.util.spec_from_file_location("latent_motion_ridge", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _episodes(rng, n_eps, driven: bool, mix, n=40):
    feat, adim = mix.shape[1], mix.shape[0]
    eps = []
    for _ in range(n_eps):
        z = rng.normal(size=(n, feat))
        a = rng.normal(size=(n, adim))
        s, s_next = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
        noise = 0.1 * rng.normal(size=(n, feat))
        change = (a @ mix if driven else rng.normal(size=(n, feat))) + noise
        eps.append((z, a, s, s_next, change))
    return eps


@pytest.mark.parametrize("driven", [True, False])
def test_actions_help_only_when_the_latent_change_follows_them(driven):
    mod = _load()
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(4, 24))  # the same dynamics in the fitted and the held-out episodes
    fit, test = _episodes(rng, 30, driven, mix), _episodes(rng, 10, driven, mix)
    rows = {(name, lam): r for name, lam, r in mod.ridge_ratios(fit, test, pca=2048, lambdas=[1.0])}
    latents, actions = rows[("latents", 1.0)], rows[("+ actions + proprio", 1.0)]
    assert latents > 0.95  # the change is independent of the current latents
    if driven:
        assert actions < 0.05  # linear in the actions: found, up to the noise
    else:
        assert actions > 0.95


def test_pca_projects_wide_latents_and_a_missing_cache_file_says_why(tmp_path):
    mod = _load()
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(4, 64))
    fit, test = _episodes(rng, 10, True, mix), _episodes(rng, 4, True, mix)
    lines = []
    rows = mod.ridge_ratios(fit, test, pca=8, lambdas=[1.0], log=lines.append)
    assert any("top 8 components" in line for line in lines) and len(rows) == 3
    with pytest.raises(FileNotFoundError, match="training episodes only"):
        mod.episode(tmp_path, None, 3, 5)
