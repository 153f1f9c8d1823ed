"""Run a training step as a GPU would, on fake tensors, on a machine without a GPU.

:mod:`ivnext_world.launch.memory` measures the memory of a real training step under PyTorch's
``FakeTensorMode`` (tensors with shapes, dtypes and storages but no data). Three things make a
fake *CPU* step behave like a CUDA one; each is a context manager here:

- :func:`cuda_autocast_policy`: CUDA's autocast policy under ``torch.autocast("cpu")``. The
  tensors must be fake CPU tensors, not fake CUDA ones: the autograd engine refuses to run a
  backward pass over CUDA tensors when no CUDA device exists (``hasPrimaryContext``), whereas the
  forward pass runs fine. CPU autocast casts fewer ops than CUDA autocast (CUDA runs
  ``layer_norm``, ``pow``, ``rsqrt``, ``softmax``, ``sum``, norms and losses in float32, CPU in
  bfloat16), which changes what is saved for backward, so the CPU autocast kernels of every op
  that CUDA or CPU autocast handles are replaced, for the duration, by kernels applying CUDA's
  policy (the op tables below; ``tests/launch/test_memory.py`` checks them against the CUDA
  autocast kernels PyTorch has registered and against a fake CUDA forward pass).
- :func:`gpu_kernels`: composite ops whose decomposition depends on the device run CUDA's (their
  composite kernels are replaced at the dispatcher). (1) ``F.scaled_dot_product_attention`` runs
  the kernel CUDA would pick. On
  a GPU, SDPA runs FlashAttention (bf16/fp16, no mask) or the memory-efficient kernel (fp32 or a
  mask); both save ``q, k, v, out`` and a float32 ``logsumexp`` for backward, never the
  ``L x L`` attention matrix. On fake CPU tensors SDPA could pick the math path, which does
  materialise it. Here it calls ``aten._scaled_dot_product_flash_attention`` or
  ``aten._scaled_dot_product_efficient_attention`` directly, whose fake implementations give
  exactly those outputs, and whose backward ops are the GPU's. (2) ``F.rms_norm`` runs CUDA's
  fused ``aten._fused_rms_norm`` (saves input, weight and ``rstd``), not the CPU decomposition.
- :func:`small_constants`: masks and indices are computed for real. A fake tensor has no values,
  so ``int(n)``, ``.tolist()`` and boolean indexing (data-dependent shapes) would fail. Random
  draws and constructors of small tensors (at most ``limit`` elements) are computed on real
  tensors and become FakeTensor *constants*; an op whose tensor inputs are all constants is
  computed on their values (FakeTensorMode's own constant propagation stops at one element and
  at views); a boolean index that is a constant becomes integer indices. The batch and every
  tensor derived from it or from the weights stay fake. (The Stage-1 teacher's pooling
  attention, which only decides *which* tokens are masked, is replaced by a uniform constant
  in :mod:`~ivnext_world.launch.memory`.)
"""
from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import Iterator

import torch
import torch._subclasses.fake_tensor as fake_tensor_module
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map, tree_map_only

aten = torch.ops.aten

# --------------------------------------------------------------------------------------------
# CUDA's autocast policy (PyTorch's aten/src/ATen/autocast_mode.h; the ops the AMP docs list under
# "CUDA Ops that can autocast to float16/float32/widest input type"). Names are aten overloads.
LOWER_PRECISION = frozenset({
    "_convolution", "_convolution.deprecated", "_cudnn_rnn", "_scaled_dot_product_flash_attention",
    "_thnn_fused_gru_cell", "_thnn_fused_lstm_cell", "addbmm", "addmm", "addmv", "addr", "baddbmm", "bmm",
    "chain_matmul", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d.input",
    "conv_transpose3d.input", "convolution", "cudnn_convolution", "cudnn_convolution_transpose", "einsum",
    "gru_cell", "linalg_multi_dot", "linalg_vecdot", "linear", "lstm_cell", "matmul", "mm", "mv", "prelu",
    "rnn_relu_cell", "rnn_tanh_cell", "scaled_dot_product_attention",
})
FP32 = frozenset({
    "_upsample_bicubic2d_aa", "_upsample_bilinear2d_aa", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
    "_upsample_nearest_exact3d", "acos", "asin", "binary_cross_entropy_with_logits", "cdist", "cosh",
    "cosine_embedding_loss", "cosine_similarity", "dist", "erfinv", "exp", "expm1", "frobenius_norm.dim",
    "group_norm", "hinge_embedding_loss", "huber_loss", "kl_div", "l1_loss", "layer_norm", "linalg_matrix_sqrth",
    "log", "log10", "log1p", "log2", "logsumexp", "margin_ranking_loss", "mse_loss", "multi_margin_loss",
    "multilabel_margin_loss", "native_layer_norm", "nll_loss", "nll_loss2d", "nuclear_norm", "nuclear_norm.dim",
    "pdist", "poisson_nll_loss", "pow.Scalar", "pow.Tensor_Scalar", "pow.Tensor_Tensor", "reciprocal", "renorm",
    "rms_norm", "rsqrt", "sinh", "smooth_l1_loss", "soft_margin_loss", "softplus", "tan", "triplet_margin_loss",
    "upsample_bicubic2d", "upsample_bilinear2d", "upsample_linear1d", "upsample_nearest1d", "upsample_nearest2d",
    "upsample_nearest3d", "upsample_trilinear3d",
})
# float32 through the op's own ``dtype`` argument (reductions and softmax)
FP32_SET_OPT_DTYPE = frozenset({
    "cumprod", "cumsum", "linalg_matrix_norm", "linalg_matrix_norm.str_ord", "linalg_vector_norm",
    "log_softmax.int", "prod", "prod.dim_int", "softmax.int", "sum", "sum.dim_IntList",
})
FP32_APPEND_DTYPE = {"norm.Scalar": "norm.ScalarOpt_dtype", "norm.ScalarOpt_dim": "norm.ScalarOpt_dim_dtype"}
PROMOTE = frozenset({"addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "grid_sampler", "index_put",
                     "scatter_add", "tensordot", "vdot"})
BANNED = frozenset({"binary_cross_entropy"})  # autocast raises: use binary_cross_entropy_with_logits
CUDA_POLICY_OPS = LOWER_PRECISION | FP32 | FP32_SET_OPT_DTYPE | set(FP32_APPEND_DTYPE) | PROMOTE | BANNED

_AUTOCAST_CPU = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)
_LOW = (torch.float16, torch.bfloat16)


def registered_autocast_ops(key: str) -> set[str]:
    """aten overloads (``"pow.Tensor_Scalar"``, ``"linear"``) with a kernel for ``key``, e.g. ``"AutocastCUDA"``."""
    out = set()
    for name in torch._C._dispatch_get_all_op_names():
        if name.startswith("aten::") and torch._C._dispatch_has_kernel_for_dispatch_key(name, key):
            out.add(name[len("aten::"):])
    return out


def _overload(name: str) -> torch._ops.OpOverload:
    base, _, overload = name.partition(".")
    return getattr(getattr(aten, base), overload or "default")


class _WeightCastCache:
    """Autocast's cast cache: a float32 leaf that requires grad (a parameter) is cast to the low
    dtype once per autocast region, so every use shares one copy (as CUDA autocast does)."""

    def __init__(self):
        self.casts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def cast(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if t.dtype == torch.float32 and t.is_leaf and t.requires_grad and not t._is_view():
            hit = self.casts.get(id(t))
            if hit is not None and hit[0] is t:
                return hit[1]
            out = t.to(dtype)
            self.casts[id(t)] = (t, out)
            return out
        return t.to(dtype)


def _eligible(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64


def _autocast_kernel(name: str, cache: _WeightCastCache):
    """A Python AutocastCPU kernel for ``aten::<name>`` that applies CUDA's policy for it."""
    op = _overload(name)
    fp32_dtype_op = _overload(FP32_APPEND_DTYPE[name]) if name in FP32_APPEND_DTYPE else None
    dtype_pos = next((i for i, a in enumerate(op._schema.arguments) if a.name == "dtype" and not a.kwarg_only), None)

    def first_eligible(args, kwargs) -> bool:
        first = next((t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)), None)
        return _eligible(first)

    def kernel(*args, **kwargs):
        low = torch.get_autocast_dtype("cpu")
        if name in BANNED:
            raise RuntimeError(f"aten::{name} is unsafe to autocast on CUDA (use the *_with_logits form)")
        if name in LOWER_PRECISION:
            args, kwargs = tree_map(lambda t: cache.cast(t, low) if _eligible(t) and t.dtype != low else t, (args, kwargs))
        elif name in FP32:
            args, kwargs = tree_map(lambda t: t.float() if _eligible(t) and t.dtype in _LOW else t, (args, kwargs))
        elif name in FP32_SET_OPT_DTYPE:
            if first_eligible(args, kwargs):  # float32 unless the caller chose a dtype
                if dtype_pos is not None and len(args) > dtype_pos:
                    if args[dtype_pos] is None:
                        args = (*args[:dtype_pos], torch.float32, *args[dtype_pos + 1:])
                elif kwargs.get("dtype") is None:
                    kwargs = {**kwargs, "dtype": torch.float32}
        elif fp32_dtype_op is not None:
            if first_eligible(args, kwargs):
                with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_CPU):
                    return fp32_dtype_op(*args, **kwargs, dtype=torch.float32)
        elif name in PROMOTE:
            dtypes = [t.dtype for t in tree_flatten((args, kwargs))[0] if _eligible(t)]
            if dtypes:
                widest = functools.reduce(torch.promote_types, dtypes)
                args, kwargs = tree_map(lambda t: t.to(widest) if _eligible(t) and t.dtype != widest else t, (args, kwargs))
        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_CPU):
            return op(*args, **kwargs)

    return kernel


def _passthrough_kernel(name: str):
    op = _overload(name)

    def kernel(*args, **kwargs):
        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_CPU):
            return op(*args, **kwargs)

    return kernel


_ACTIVE_CACHE: _WeightCastCache | None = None  # set while cuda_autocast_policy() is active


@contextlib.contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """While active, ``torch.autocast("cpu", ...)`` casts exactly as CUDA autocast does.

    CPU-only casts (``cat``, ``stack``, CPU linear algebra, ...) are switched off; ops of CUDA's
    tables get CUDA's policy. The kernels are unregistered on exit. Not re-entrant.
    """
    global _ACTIVE_CACHE
    if _ACTIVE_CACHE is not None:
        raise RuntimeError("cuda_autocast_policy() is already active")
    cache = _WeightCastCache()
    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
            for name in sorted(CUDA_POLICY_OPS | registered_autocast_ops("AutocastCPU")):
                try:
                    _overload(name)
                except AttributeError:  # an op of the table this PyTorch does not have
                    continue
                kernel = _autocast_kernel(name, cache) if name in CUDA_POLICY_OPS else _passthrough_kernel(name)
                lib.impl(name, kernel, "AutocastCPU")
        _ACTIVE_CACHE = cache
        yield
    finally:
        _ACTIVE_CACHE = None
        lib._destroy()


@contextlib.contextmanager
def autocast_region(dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast("cpu", dtype)`` (None: autocast off). Like CUDA autocast leaving its
    outermost region, the parameters' cast copies are dropped at the end."""
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        try:
            yield
        finally:
            if _ACTIVE_CACHE is not None:
                _ACTIVE_CACHE.casts.clear()


# --------------------------------------------------------------------------------------------
def _gpu_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False):
    """``aten::scaled_dot_product_attention`` through the kernel CUDA would pick (autocast has cast
    the inputs already: SDPA is in its lower-precision list)."""
    head_dim = query.shape[-1]
    fused = not enable_gqa and query.dim() == 4 and key.shape[1] == query.shape[1] and head_dim <= 256 and head_dim % 8 == 0
    if not fused:  # CUDA's math fallback materialises the attention matrix too
        return aten._scaled_dot_product_attention_math(query, key, value, attn_mask, dropout_p, is_causal,
                                                       scale=scale, enable_gqa=enable_gqa)[0]
    if attn_mask is None and query.dtype in _LOW:
        return aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal, False, scale=scale)[0]
    bias = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:  # SDPA's convert_boolean_attn_mask
            attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill_(~attn_mask, -math.inf)
        b, h, lq, lk = query.shape[0], query.shape[1], query.shape[2], key.shape[2]
        bias = attn_mask.expand(b, h, lq, lk)
    return aten._scaled_dot_product_efficient_attention(query, key, value, bias, True, dropout_p, is_causal, scale=scale)[0]


class _FusedRmsNorm(torch.autograd.Function):
    """CUDA's ``aten._fused_rms_norm`` node: saves input, weight and ``rstd`` for backward. (On a
    CPU ``aten._fused_rms_norm`` is decomposed above autograd, which saves the intermediates.)"""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight, eps):
        out, rstd = aten._fused_rms_norm(input, normalized_shape, weight, eps)
        ctx.normalized_shape = normalized_shape
        ctx.save_for_backward(input, weight, rstd)
        return out

    @staticmethod
    def backward(ctx, grad):
        input, weight, rstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[2]]
        gi, gw = aten._fused_rms_norm_backward(grad, input, ctx.normalized_shape, rstd, weight, mask)
        return gi, None, gw, None


def _gpu_rms_norm(input, normalized_shape, weight=None, eps=None):
    """``aten::rms_norm`` as on CUDA: one fused kernel (float32 under autocast: its policy)."""
    return _FusedRmsNorm.apply(input, list(normalized_shape), weight, eps)


@contextlib.contextmanager
def gpu_kernels() -> Iterator[None]:
    """``aten::scaled_dot_product_attention`` and ``aten::rms_norm`` run the kernels CUDA runs.

    Both are composite ops whose decomposition depends on the device; their composite kernels
    are replaced for the duration (dispatcher-level, so backward recomputation of checkpointed
    blocks sees them too).
    """
    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
            lib.impl("scaled_dot_product_attention", _gpu_sdpa, "CompositeImplicitAutograd")
            lib.impl("rms_norm", _gpu_rms_norm, "CompositeImplicitAutograd")
        yield
    finally:
        lib._destroy()


# --------------------------------------------------------------------------------------------
class _SmallConstants(TorchDispatchMode):
    def __init__(self, fake_mode: FakeTensorMode, limit: int):
        super().__init__()
        self.fake_mode = fake_mode
        self.limit = limit

    def _const(self, real: torch.Tensor) -> FakeTensor:
        return self.fake_mode.fake_tensor_converter.from_real_tensor(self.fake_mode, real, make_constant=True)

    def _is_const(self, t) -> bool:
        return isinstance(t, FakeTensor) and t.constant is not None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _INDEX_OPS:
            args = self._integer_indices(func, args)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if tensors and all(self._is_const(t) for t in tensors):
            return self._real(func, args, kwargs)  # values known: compute them (masks, indices)
        if not tensors and (torch.Tag.nondeterministic_seeded in func.tags or _is_factory(func)):
            out = func(*args, **kwargs)  # fake first: shape and size of the result
            outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            if outs and all(t.numel() <= self.limit and t.device.type == "cpu" for t in outs):
                return self._real(func, args, kwargs)
            return out
        return func(*args, **kwargs)

    def _real(self, func, args, kwargs):
        """Run ``func`` on the constants' values; outputs that are inputs (in place) stay those fakes."""
        by_value = {id(t.constant): t for t in tree_flatten((args, kwargs))[0] if self._is_const(t)}
        real_args, real_kwargs = tree_map_only(FakeTensor, lambda t: t.constant, (args, kwargs))
        with unset_fake_temporarily():
            real = func(*real_args, **real_kwargs)

        def wrap(t: torch.Tensor):
            if id(t) in by_value:
                return by_value[id(t)]
            return self.fake_mode.fake_tensor_converter.from_real_tensor(
                self.fake_mode, t, make_constant=t.numel() <= self.limit)

        return tree_map_only(torch.Tensor, wrap, real)

    def _integer_indices(self, func, args):
        # aten.index.Tensor(self, indices) / index_put(self, indices, values, ...): a bool index that
        # is a constant becomes the integer indices of its True entries (what eager indexing does).
        indices = args[1]
        if not any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices):
            return args
        new: list = []
        for i in indices:
            if i is None or i.dtype not in (torch.bool, torch.uint8):
                new.append(i)
                continue
            if not self._is_const(i):
                raise RuntimeError(
                    f"{func}: boolean index without known values (a mask computed from fake data); "
                    "memory estimation needs masks built from small constant tensors")
            with unset_fake_temporarily():
                cols = i.constant.bool().nonzero().unbind(1)
            new.extend(self._const(c) for c in cols)
        return (args[0], new, *args[2:])


_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default,
              aten._unsafe_index_put.default}


def _is_factory(func) -> bool:
    return func._schema.name.split("::")[-1] in {
        "zeros", "ones", "full", "empty", "arange", "rand", "randn", "randint", "randperm", "linspace",
        "scalar_tensor", "eye", "empty_strided", "normal",
    }


@contextlib.contextmanager
def small_constants(fake_mode: FakeTensorMode, limit: int = 1 << 21) -> Iterator[None]:
    """Random draws and constructors of at most ``limit`` elements are computed for real (see module doc)."""
    old = fake_tensor_module.CONSTANT_NUMEL_LIMIT
    fake_tensor_module.CONSTANT_NUMEL_LIMIT = limit  # FakeTensorMode's constant propagation size limit
    try:
        with _SmallConstants(fake_mode, limit):
            yield
    finally:
        fake_tensor_module.CONSTANT_NUMEL_LIMIT = old
