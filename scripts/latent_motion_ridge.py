"""Do an encoder's latents carry the robot's motion? Ridge regressions of the latent change over one
world-model step, scored on held-out episodes against copy-last.

For every frame ``t`` of a world model's latent cache (``<world model>/latents``, our LeRobot layout
beside it), the target is ``z[t + k] - z[t]`` (``k`` = frame skip) and the features are, in three
nested sets: the latents ``z[t]`` alone (what regression to the mean gives), + the ``k`` actions and
the proprio at ``t``, + the true proprio at ``t + k`` (an oracle: where the agent actually went). If
the last two sets do not beat the first, the latents' change is not (linearly) a function of the
agent's motion, and a world model has little to learn from actions. Latents wider than ``--pca``
features are projected onto their top principal components first (the target stays full).

    python scripts/latent_motion_ridge.py --cache outputs/pusht/wm_random/latents --data outputs/pusht/data \\
        --fit 0-159 --test 160-199 --frame-skip 5

Prints one line per feature set and ridge strength: held-out MSE of the predicted change / copy-last's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _range(text: str) -> list[int]:
    a, b = (int(x) for x in text.split("-"))
    return list(range(a, b + 1))


def episode(cache: Path, meta, ep: int, k: int):
    from safetensors.numpy import load_file

    from ivnext_world.data.lerobot.layout import ACTION, STATE

    path = cache / f"episode_{ep:06d}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: a world model caches its training episodes only, "
                                "so take --fit and --test from those")
    z = load_file(str(path))["latents"].astype(np.float64)
    table = meta.episode_table(ep)
    a, s = (np.asarray(table[key], dtype=np.float64).reshape(len(table[key]), -1) for key in (ACTION, STATE))
    n = len(z) - k
    if n < 1:
        raise ValueError(f"episode {ep} has {len(z)} frames, fewer than frame skip {k} + 1")
    chunks = np.stack([a[j:j + k].ravel() for j in range(n)])
    return z[:n].reshape(n, -1), chunks, s[:n], s[k:k + n], (z[k:] - z[:n]).reshape(n, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="a world model's latent cache folder")
    ap.add_argument("--data", required=True, help="the LeRobot folder the cache was encoded from")
    ap.add_argument("--fit", type=_range, required=True, help="episodes the ridge is fitted on, e.g. 0-159")
    ap.add_argument("--test", type=_range, required=True, help="held-out episodes, e.g. 160-199")
    ap.add_argument("--frame-skip", type=int, default=5)
    ap.add_argument("--pca", type=int, default=2048, help="project wider latents onto this many components")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[1e2, 1e3, 1e4, 1e5])
    args = ap.parse_args()
    if set(args.fit) & set(args.test):
        ap.error("--fit and --test overlap")
    from ivnext_world.data import LeRobotDataset

    cache, meta = Path(args.cache), LeRobotDataset(args.data)
    fit = [episode(cache, meta, e, args.frame_skip) for e in args.fit]
    test = [episode(cache, meta, e, args.frame_skip) for e in args.test]
    for name, lam, ratio in ridge_ratios(fit, test, args.pca, args.lambdas, log=print):
        print(f"{name:24s} lambda {lam:8g}: held-out MSE of the change / copy-last = {ratio:.3f}")


FEATURE_SETS = (("latents", 1), ("+ actions + proprio", 3), ("+ true future proprio", 4))


def ridge_ratios(fit: list, test: list, pca: int, lambdas: list[float], log=lambda *_: None) -> list[tuple[str, float, float]]:
    """``fit``/``test``: per episode ``(z (n, F), action chunks (n, kA), proprio (n, S), future proprio (n, S),
    change (n, F))`` as :func:`episode` returns. Returns ``(feature set, lambda, held-out MSE / copy-last's)``."""
    cat = lambda eps, j: np.concatenate([x[j] for x in eps])  # noqa: E731
    z_fit, z_test = cat(fit, 0), cat(test, 0)
    mean = z_fit.mean(0)
    log(f"latent features {z_fit.shape[1]}; variance across frames {((z_fit - mean) ** 2).mean():.3e}; "
        f"change per step (copy-last MSE, fit) {(cat(fit, 4) ** 2).mean():.3e}")
    if z_fit.shape[1] > pca:
        _, sv, vt = np.linalg.svd(z_fit[::4] - mean, full_matrices=False)
        basis = vt[:pca].T
        log(f"projected onto the top {pca} components ({(sv[:pca] ** 2).sum() / (sv ** 2).sum():.0%} of the variance)")
        z_fit, z_test = (z_fit - mean) @ basis, (z_test - mean) @ basis
    parts_fit = [z_fit, cat(fit, 1), cat(fit, 2), cat(fit, 3)]
    parts_test = [z_test, cat(test, 1), cat(test, 2), cat(test, 3)]
    y_fit, y_test = cat(fit, 4), cat(test, 4)
    base = (y_test ** 2).mean()
    rows = []
    for name, use in FEATURE_SETS:
        a, b = np.concatenate(parts_fit[:use], 1), np.concatenate(parts_test[:use], 1)
        mu, sd = a.mean(0), a.std(0) + 1e-8
        a, b = (a - mu) / sd, (b - mu) / sd
        gram, rhs = a.T @ a, a.T @ (y_fit - y_fit.mean(0))
        for lam in lambdas:
            w = np.linalg.solve(gram + lam * np.eye(len(gram)), rhs)
            rows.append((name, lam, float(((b @ w + y_fit.mean(0) - y_test) ** 2).mean() / base)))
    return rows


if __name__ == "__main__":
    main()
