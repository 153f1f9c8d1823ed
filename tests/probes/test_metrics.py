"""Depth metrics and losses against hand-computed values."""
import math

import pytest
import torch

from ivnext_world.probes.depth import Probe3DDepthLoss, align_scale_shift, depth_metrics, gradient_loss, silog_loss


def test_scale_aware_metrics_match_hand_computation():
    gt = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    pred = torch.tensor([[1.0, 2.0], [2.0, 16.0]])
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx((0 + 0 + 2 / 4 + 8 / 8) / 4)  # 0.375
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 0 + 4 + 64) / 4))
    # ratios 1, 1, 2, 2: below 1.25 and 1.5625 and 1.953 only the exact ones
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((0.5, 0.5, 0.5))


def test_delta_thresholds_separate():
    gt = torch.ones(1, 1, 4)
    pred = torch.tensor([[[1.2, 1.5, 1.9, 2.5]]])  # ratios 1.2 < 1.25 < 1.5 < 1.5625 < 1.9 < 1.953 < 2.5
    m = depth_metrics(pred, gt)
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((0.25, 0.5, 0.75))


def test_scale_invariant_metrics_undo_scale_and_shift():
    gt = torch.tensor([[[1.0, 2.0, 3.0, 5.0]]])
    pred = (gt - 1.0) / 3.0 + 0.2  # gt = 3 * pred + 0.4
    s, t = align_scale_shift(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert float(s) == pytest.approx(3.0, rel=1e-5) and float(t) == pytest.approx(0.4, abs=1e-5)
    m = depth_metrics(pred, gt)
    assert m["si_abs_rel"] == pytest.approx(0.0, abs=1e-5) and m["si_d1"] == 1.0 and m["si_rmse"] == pytest.approx(0, abs=1e-5)
    assert m["abs_rel"] > 0.5  # the scale-aware version sees the error


def test_scale_invariant_metric_by_hand_when_not_affine():
    # gt = [1, 2, 3], pred = [0, 0, 1]: least squares gives s = 1.5, t = 1.5 -> aligned [1.5, 1.5, 3]
    gt, pred = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    m = depth_metrics(pred, gt)
    assert m["si_abs_rel"] == pytest.approx((0.5 / 1 + 0.5 / 2 + 0) / 3)
    assert m["si_rmse"] == pytest.approx(math.sqrt((0.25 + 0.25) / 3))
    assert m["si_d1"] == pytest.approx(1 / 3)  # ratios 1.5, 1.33, 1: only the last is below 1.25


def test_invalid_pixels_are_ignored_and_images_weigh_equally():
    gt = torch.tensor([[[1.0, 0.0, float("nan"), 2.0]], [[1.0, 1.0, 1.0, 1.0]]])
    pred = torch.tensor([[[2.0, 99.0, 99.0, 2.0]], [[1.0, 1.0, 1.0, 1.0]]])
    m = depth_metrics(pred, gt)
    # image 0: valid pixels 0 and 3 -> abs_rel (1 + 0) / 2 = 0.5; image 1: 0 -> mean 0.25
    assert m["abs_rel"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no valid"):
        depth_metrics(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="differ in shape"):
        depth_metrics(torch.ones(1, 2, 2), torch.ones(1, 2, 3))


def test_silog_is_zero_for_exact_depth_and_scale_aware_by_lambda():
    gt = torch.rand(2, 8, 8) + 0.5
    mask = torch.ones_like(gt, dtype=torch.bool)
    assert float(silog_loss(gt, gt, mask)) == pytest.approx(0.0, abs=1e-2)  # sqrt(eps)
    c = 2.0
    # g = log c everywhere: sqrt(g^2 - lam g^2) = sqrt(1 - lam) |log c|
    assert float(silog_loss(c * gt, gt, mask, lam=0.85)) == pytest.approx(math.sqrt(0.15) * math.log(c), rel=1e-3)
    assert float(silog_loss(c * gt, gt, mask, lam=1.0)) == pytest.approx(0.0, abs=1e-2)


def test_gradient_loss_ignores_global_scale_but_sees_edges():
    gt = torch.rand(1, 16, 16) + 0.5
    mask = torch.ones_like(gt, dtype=torch.bool)
    assert float(gradient_loss(3 * gt, gt, mask)) == pytest.approx(0.0, abs=1e-5)
    bumped = gt.clone()
    bumped[:, :, 8:] *= 2  # a step in the log-ratio along x
    assert float(gradient_loss(bumped, gt, mask)) > 0.05


def test_probe3d_loss_weights_and_nan_ground_truth():
    gt = torch.rand(2, 8, 8) + 0.5
    gt[0, 0, 0] = float("nan")
    pred = 1.5 * gt.nan_to_num(1.0)
    loss, parts = Probe3DDepthLoss()(pred, gt)
    assert torch.isfinite(loss)
    assert float(loss) == pytest.approx(10 * float(parts["loss_silog"]) + 0.5 * float(parts["loss_grad"]), rel=1e-5)
    assert float(parts["loss_silog"]) == pytest.approx(math.sqrt(0.15) * math.log(1.5), rel=1e-2)
