"""Depth and 3D probing of frozen video features (Probe3D / DINOv2 protocols), also on imagined futures.

One concept per file: ``heads`` (linear, linear over 4 layers, DPT), ``features`` (frozen per-frame
maps), ``encoders`` (which encoder: random init, pretraining checkpoint, image teacher), ``losses``
(SILog + gradient), ``metrics`` (AbsRel, RMSE, d1-3, scale-invariant), ``geometry`` (open3d
back-projection, Chamfer, .ply, pictures), ``train``, ``evaluate``, ``imagine`` (world-model
rollouts), ``video`` (any video file), ``compare`` (encoders x heads table, main-job hook).
"""
from .compare import compare_depth_probes, run_depth_probe
from .evaluate import evaluate_depth_probe, predict_depth
from .geometry import backproject, chamfer_distance, intrinsics_from_fov, point_cloud, render_point_clouds, write_ply
from .heads import DepthHeadConfig, DepthProbe, probe_layers
from .imagine import imagined_depth
from .losses import Probe3DDepthLoss, gradient_loss, silog_loss
from .metrics import align_scale_shift, depth_metrics
from .train import DepthProbeConfig, load_depth_probe, train_depth_probe
from .video import VideoDecodeError, predict_video

__all__ = [
    "DepthHeadConfig", "DepthProbe", "DepthProbeConfig", "Probe3DDepthLoss", "VideoDecodeError", "align_scale_shift",
    "backproject", "chamfer_distance", "compare_depth_probes", "depth_metrics", "evaluate_depth_probe", "gradient_loss",
    "imagined_depth", "intrinsics_from_fov", "load_depth_probe", "point_cloud", "predict_depth", "predict_video",
    "probe_layers", "render_point_clouds", "run_depth_probe", "silog_loss", "train_depth_probe", "write_ply",
]
