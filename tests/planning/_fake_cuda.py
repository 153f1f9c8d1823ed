"""A stand-in CUDA device for CPU-only tests of device placement (no GPU exists on the test machines).

Inside ``with fake_cuda():`` a tensor moved or created on ``"cuda"`` is a :class:`FakeCudaTensor`:
real CPU values (so planners can compare costs and index elites), reporting ``device == cuda:0``,
and refusing, as a real CUDA tensor does, to be mixed with a CPU tensor in one op (CPU 0-dim
scalars and CPU indices into a CUDA tensor are allowed, as on CUDA). A CPU generator used to draw
onto ``cuda`` is refused as well. So code that leaves candidates on the CPU while a world model
computes on CUDA fails here exactly where it fails on a GPU: "Expected all tensors to be on the
same device". ``.cpu()`` / ``.to("cpu")`` return plain CPU tensors.

Only placement is emulated, not CUDA's kernels or numerics, and only what the planners and the
world model use: fused attention is routed to the math path, and the bindings that build tensors in
C++ (``Tensor.to``, ``.cuda()``, ``new_tensor``, ``torch.as_tensor(device=)``) are routed through
``aten._to_copy``. Like torch's own FakeTensor, a fake tensor is a meta tensor to C++.
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

CUDA = torch.device("cuda", 0)
aten = torch.ops.aten

# Ops whose outputs are Python scalars or that only report metadata: return the CPU result as is.
_SCALAR_OPS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default}
_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


class FakeCudaTensor(torch.Tensor):
    """CPU values behind a ``cuda:0`` device (see the module docstring)."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        r = torch.Tensor._make_wrapper_subclass(cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(),
                                                dtype=elem.dtype, device="meta", requires_grad=elem.requires_grad)
        r.elem = elem
        return r

    # C++ sees a meta tensor (as for torch's FakeTensor): its bindings then never set up a CUDA device
    # guard, which would need a driver. Python code sees cuda:0.
    @property
    def device(self) -> torch.device:
        return CUDA

    @property
    def is_cuda(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"FakeCudaTensor({self.elem})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def _is_cuda(d) -> bool:
    """A target device meaning the fake GPU: "cuda", or "meta" (what C++ code reads off a fake tensor)."""
    return d is not None and torch.device(d).type in ("cuda", "meta")


def _dispatch(func, args, kwargs):
    if func is aten._fused_sdp_choice.default:
        return 0  # SDPBackend.MATH: the composite attention decomposes into ops emulated here
    on_cuda, on_cpu = [], []

    def unwrap(x):
        if isinstance(x, FakeCudaTensor):
            on_cuda.append(x)
            return x.elem
        if isinstance(x, torch.Tensor) and x.device.type == "meta":
            raise NotImplementedError(f"fake_cuda: {func} got a real meta tensor (a binding the helper does not route)")
        if isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dim() > 0:
            on_cpu.append(x)
        return x

    self_arg = args[0] if args else None
    a, k = tree_map(unwrap, (tuple(args), dict(kwargs)))
    if on_cuda and on_cpu and not (func in _INDEX_OPS and isinstance(self_arg, FakeCudaTensor)):
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"cuda:0 and cpu! ({func})")
    target = k.pop("device", None) if "device" in k else None
    gen = k.get("generator")
    if _is_cuda(target) and gen is not None and gen.device.type != "cuda":
        raise RuntimeError("Expected a 'cuda' device type for generator but found 'cpu'")
    if target is not None:
        k["device"] = "cpu" if _is_cuda(target) else target
    out = func(*a, **k)
    if func in _SCALAR_OPS:
        return out
    wrap = _is_cuda(target) if target is not None else bool(on_cuda)
    if not wrap:
        return out
    return tree_map(lambda x: FakeCudaTensor(x) if isinstance(x, torch.Tensor) and not isinstance(x, FakeCudaTensor) else x,
                    out)


class _FakeCudaMode(TorchDispatchMode):
    """Catches what a subclass alone cannot: factories and copies *onto* ``cuda`` from CPU tensors."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


class _FakeCudaCopies(TorchFunctionMode):
    """Copies between the devices: the C++ bindings of ``Tensor.to`` / ``.cuda()`` / ``.cpu()`` /
    ``torch.as_tensor(..., device=)`` set up the CUDA runtime before dispatching, so they are routed
    to ``aten._to_copy`` here (differentiable, like ``Tensor.to``), which the dispatch mode places."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.to:
            t = args[0]
            if len(args) > 1 and isinstance(args[1], torch.Tensor):  # .to(other): other's device and dtype
                device, dtype = args[1].device, args[1].dtype
            else:
                device, dtype, _, _ = torch._C._nn._parse_to(*args[1:], **kwargs)  # device, dtype, non_blocking, format
            fake = isinstance(t, FakeCudaTensor)
            if (device is None or _is_cuda(device) == fake) and (dtype is None or dtype == t.dtype):
                return t  # nothing to do: Tensor.to returns the tensor itself
            if fake or _is_cuda(device):
                return torch.ops.aten._to_copy(t, dtype=dtype or t.dtype, device=device or t.device)
        if func is torch.Tensor.cuda:
            return args[0] if isinstance(args[0], FakeCudaTensor) else torch.ops.aten._to_copy(args[0], device=CUDA)
        if func is torch.Tensor.cpu and isinstance(args[0], FakeCudaTensor):
            return torch.ops.aten._to_copy(args[0], device=torch.device("cpu"))
        if func is torch.Tensor.new_tensor and isinstance(args[0], FakeCudaTensor):  # builds on the meta device in C++
            data = torch.tensor(args[1], dtype=kwargs.get("dtype") or args[0].dtype)
            return torch.ops.aten._to_copy(data, device=kwargs.get("device") or CUDA)
        if func in (torch.as_tensor, torch.tensor) and _is_cuda(kwargs.get("device")):
            return torch.ops.aten._to_copy(func(*args, **{**kwargs, "device": "cpu"}), device=CUDA)
        return func(*args, **kwargs)


@contextlib.contextmanager
def fake_cuda():
    """``with fake_cuda(): ...`` -- ``"cuda"`` is a CPU-backed device that checks placement like CUDA."""
    # torch initialises the CUDA runtime (Python ``torch.cuda._lazy_init``) before moving or creating a
    # tensor on "cuda"; there is none here, and the mode below supplies the device.
    lazy_init, torch.cuda._lazy_init = torch.cuda._lazy_init, lambda: None
    try:
        with _FakeCudaCopies(), _FakeCudaMode():
            yield
    finally:
        torch.cuda._lazy_init = lazy_init
