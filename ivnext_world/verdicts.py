"""The main job judges itself: each section names its baseline and says whether it beat it.

A :class:`Verdict` is computed from a section's measured numbers only (never from settings), shown
on the page as ``PASS`` / ``FALLS SHORT`` with those numbers, and stored in ``results.json`` under
``"verdicts"``. The bars are the ones the README states for the main job at CPU scale:

- state probe: every pretrained encoder at least ``STATE_R2_MARGIN`` R^2 above random init;
- depth: on moving pixels (``dyn_abs_rel``), every pretrained encoder below random init and below the
  static map (a depth map that never looks at the image);
- world model: latent error at most ``WM_MAX_RATIO`` x copy-last at every horizon from 2 on, and the
  predictions depend on the actions (action sensitivity > 0);
- decoder: decoding held-out frames' true latents at least ``DECODER_MIN_PSNR`` dB;
- planning: the latent-only objective solves at least ``PLAN_MIN_SUCCESS`` of the reach episodes;
- classification: the best video encoder beats the single-frame baseline on the temporal benchmark.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Sequence

STATE_R2_MARGIN = 0.05
WM_MAX_RATIO = 0.90
DECODER_MIN_PSNR = 22.0
PLAN_MIN_SUCCESS = 0.80


@dataclass
class Verdict:
    section: str
    baseline: str  # what the section is judged against, in words
    passed: Optional[bool]  # None: not measured (section off, or too little data to judge)
    numbers: dict = field(default_factory=dict)
    detail: str = ""  # the numbers behind the verdict, in words

    @property
    def label(self) -> str:
        return {True: "PASS", False: "FALLS SHORT", None: "NOT JUDGED"}[self.passed]

    def line(self) -> str:
        return f"{self.label}: {self.detail}" if self.detail else self.label

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def state_probe_verdict(r2: Mapping[str, float], random_key: str = "random init") -> Verdict:
    """``r2``: encoder name -> held-out R^2, including ``random_key``."""
    base = r2.get(random_key)
    others = {k: v for k, v in r2.items() if k != random_key}
    if base is None or not others:
        return Verdict("state probe", f"random init + {STATE_R2_MARGIN} R^2", None, dict(r2), "no random-init row or no pretrained row")
    gains = {k: v - base for k, v in others.items()}
    ok = all(g >= STATE_R2_MARGIN for g in gains.values())
    detail = "; ".join(f"{k} R^2 {others[k]:.3f} ({g:+.3f} vs random init {base:.3f})" for k, g in gains.items())
    return Verdict("state probe", f"random init + {STATE_R2_MARGIN} R^2", ok,
                   {"r2": dict(r2), "gain_over_random": gains, "required_gain": STATE_R2_MARGIN}, detail)


def depth_verdict(rows: Sequence[Mapping], head: str = "linear", random_key: str = "random init",
                  static_key: str = "static map (no image)") -> Verdict:
    """``rows``: the depth comparison's rows (``encoder``, ``head``, ``dyn_abs_rel``)."""
    dyn = {r["encoder"]: r.get("dyn_abs_rel") for r in rows if r["head"] in (head, "-")}
    base, static = dyn.get(random_key), dyn.get(static_key)
    pre = {k: v for k, v in dyn.items() if k not in (random_key, static_key)}
    baseline = "random init and the static map, AbsRel on moving pixels (lower is better)"
    if base is None or static is None or not pre or any(v is None for v in pre.values()):
        return Verdict("depth probe", baseline, None, {"dyn_abs_rel": dyn}, "moving-pixel AbsRel missing for a row")
    ok = all(v < base and v < static for v in pre.values())
    detail = "; ".join(f"{k} {v:.3f}" for k, v in pre.items()) + f" vs random init {base:.3f}, static map {static:.3f}"
    return Verdict("depth probe", baseline, ok, {"dyn_abs_rel": dyn, "head": head}, detail)


def world_model_verdict(horizons: Sequence[int], wm_l1: Sequence[float], copy_last_l1: Sequence[float],
                        action_sensitivity: Sequence[Optional[float]], from_horizon: int = 2) -> Verdict:
    ratios = [a / b if b else float("inf") for a, b in zip(wm_l1, copy_last_l1)]
    judged = [(h, r) for h, r in zip(horizons, ratios) if h >= from_horizon]
    sens = [s for s in action_sensitivity if s is not None]
    baseline = f"copy-last latent, ratio <= {WM_MAX_RATIO} at every horizon >= {from_horizon}; action sensitivity > 0"
    numbers = {"horizons": list(horizons), "ratio_to_copy_last": ratios, "action_sensitivity": list(action_sensitivity),
               "max_ratio": WM_MAX_RATIO}
    if not judged:
        return Verdict("world model", baseline, None, numbers, "no horizon >= 2 evaluated")
    worst_h, worst = max(judged, key=lambda hr: hr[1])
    ok = worst <= WM_MAX_RATIO and bool(sens) and max(sens) > 0
    detail = (f"ratio to copy-last {min(r for _, r in judged):.3f}-{worst:.3f} over h={judged[0][0]}..{judged[-1][0]} "
              f"(worst at h={worst_h}); action sensitivity up to {max(sens) if sens else float('nan'):.4f}")
    return Verdict("world model", baseline, ok, numbers, detail)


def decoder_verdict(psnr_db: Optional[float], mean_image_psnr_db: Optional[float] = None) -> Verdict:
    baseline = f"PSNR >= {DECODER_MIN_PSNR:.0f} dB decoding held-out frames' true latents"
    if psnr_db is None:
        return Verdict("decoder", baseline, None, {}, "not measured (no pixel decoder)")
    detail = f"{psnr_db:.1f} dB"
    if mean_image_psnr_db is not None:
        detail += f" (the training frames' mean image scores {mean_image_psnr_db:.1f} dB)"
    return Verdict("decoder", baseline, psnr_db >= DECODER_MIN_PSNR,
                   {"psnr_db": psnr_db, "mean_image_psnr_db": mean_image_psnr_db, "min_psnr_db": DECODER_MIN_PSNR}, detail)


def planning_verdict(latent_only: Optional[float], random_policy: Optional[float] = None,
                     latent_proprio: Optional[float] = None) -> Verdict:
    baseline = f"latent-only CEM-MPC success >= {PLAN_MIN_SUCCESS:.0%} (random policy beside it)"
    numbers = {"latent_only": latent_only, "latent_proprio": latent_proprio, "random_policy": random_policy,
               "min_success": PLAN_MIN_SUCCESS}
    if latent_only is None:
        return Verdict("planning", baseline, None, numbers, "latent-only objective not evaluated")
    detail = f"latent-only {latent_only:.0%}"
    if latent_proprio is not None:
        detail += f", latent + proprio {latent_proprio:.0%}"
    if random_policy is not None:
        detail += f", random policy {random_policy:.0%}"
    return Verdict("planning", baseline, latent_only >= PLAN_MIN_SUCCESS, numbers, detail)


def classification_verdict(top1: Mapping[str, float], single_frame_key: str) -> Verdict:
    """The best encoder against the single-frame baseline (``top1``: row name -> top-1 in [0, 1])."""
    base = top1.get(single_frame_key)
    others = {k: v for k, v in top1.items() if k != single_frame_key}
    baseline = "the single-frame baseline's top-1 on the temporal benchmark"
    if base is None or not others:
        return Verdict("classification", baseline, None, dict(top1), "missing rows")
    best = max(others, key=others.get)
    return Verdict("classification", baseline, others[best] > base, {"top1": dict(top1), "best": best},
                   f"best {best} {others[best]:.0%} vs single frame {base:.0%}")
