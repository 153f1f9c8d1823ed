"""Model FLOPs utilisation (MFU): counted FLOPs, datasheet peaks and a measured matmul peak.

MFU is achieved model FLOP/s divided by the hardware's peak. Two denominators are reported, and
they must not be confused:

- the **datasheet** dense bf16 peak (no sparsity), which is what papers quote MFU against;
- the **measured** bf16 matmul peak (a large square matmul in the same process), which is usually
  75-80% of the datasheet on H100s. MFU against it reads 1.25-1.3x higher: it says how close a step
  comes to the best this GPU does today, not to the hardware's rating.

FLOPs are counted by PyTorch's :class:`torch.utils.flop_counter.FlopCounterMode` over the real
forward and backward of a step (matmuls, convolutions, scaled-dot-product attention; 2 FLOPs per
multiply-add), so everything the step runs is included: for Stage 1 the frozen teacher's forward,
the predictor and the diffusion decoder, not only the encoder.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

# Dense bf16 tensor-core peaks (TFLOP/s, no structured sparsity) from NVIDIA's datasheets, matched
# against torch.cuda.get_device_name() by substring, most specific first.
DATASHEET_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("H200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.4),  # SXM ("H100 80GB HBM3")
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
)


def datasheet_peak_flops(device_name: str) -> float | None:
    """Datasheet dense bf16 FLOP/s of a GPU by name (``torch.cuda.get_device_name()``), or None if unknown."""
    for key, tflops in DATASHEET_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def count_flops(fn: Callable[[], object], device: torch.device | str = "cuda") -> int:
    """Total FLOPs that ``fn()`` runs (forward and, if ``fn`` calls it, backward) on ``device``.

    The counter knows CUDA's fused attention kernels (flash, memory-efficient, cuDNN) but not the
    CPU's flash kernel, so on a CPU attention runs through the math path while counting (same
    FLOPs, all of them visible to the counter).
    """
    math_attention = torch.device(device).type == "cpu"
    with FlopCounterMode(display=False) as counter:
        with sdpa_kernel([SDPBackend.MATH]) if math_attention else contextlib.nullcontext():
            fn()
    return int(counter.get_total_flops())


def encoder_train_flops(params_in_blocks: int, depth: int, width: int, seq: int, batch: int) -> int:
    """Closed form for a ViT training step: dense weights ``6 P L`` + attention ``12 depth L^2 D``.

    ``P`` counts the blocks' weight matrices (norm scales, LayerScale and biases are not matmuls).
    Equals :func:`count_flops` on our encoder's blocks; kept as a cross-check of the counter and
    for sizes that are not run.
    """
    return batch * (6 * params_in_blocks * seq + 12 * depth * seq**2 * width)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: torch.device, n: int = 8192, iters: int = 50, dtype=torch.bfloat16) -> float:
    """Best-of-3 FLOP/s of an ``n x n @ n x n`` matmul (bf16 on CUDA; use a small ``n`` on a CPU)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - t0))
    return best


def mfu(flops_per_step: float, seconds_per_step: float, peak_flops: float | None) -> float | None:
    """Fraction of ``peak_flops`` achieved (None where the peak is unknown)."""
    if not peak_flops or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / peak_flops
