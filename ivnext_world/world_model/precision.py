"""Inference precision of the world model: which autocast (if any) wraps encode, rollout, decode,
the latent cache and the planners' world-model calls.

``"auto"`` = bf16 autocast on a CUDA device that supports bf16 (Ampere and later), fp32 anywhere
else (CPU: the default there stays bit-identical to the fp32 code). ``"fp32"`` = no autocast.
``"bf16"`` = bf16 autocast on any device (CPU autocast supports bf16 too; tests use it). Autocast
runs the matmuls/attention in bf16 while keeping norms, softmax and reductions in fp32; callers get
fp32 tensors back, and planning costs are computed in fp32 from them.

    with inference_autocast("auto", wm.device):
        z = encoder(x)
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["PRECISIONS", "check_precision", "inference_autocast", "inference_dtype"]

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def inference_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None = fp32 (no autocast)."""
    check_precision(precision)
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type not in ("cuda", "cpu"):
            raise ValueError(f"precision='bf16' needs a cuda or cpu device, got {device}")
        if device.type == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision='bf16' but {torch.cuda.get_device_name(device)} has no bf16 support: use 'fp32'")
        return torch.bfloat16
    # auto: bf16 only where it is fast and supported.
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def inference_autocast(precision: str, device: torch.device | str):
    """A context manager: ``torch.autocast(device.type, bf16)`` or a no-op for fp32."""
    dtype = inference_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
