"""Probes on frozen features: what a pretrained encoder knows about the simulated world."""
from .state import StateProbeResult, frame_features, ridge_probe, state_probe

__all__ = ["StateProbeResult", "frame_features", "ridge_probe", "state_probe"]
