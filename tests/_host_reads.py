"""Count what would make a training step on a GPU wait for the device (a host sync).

On a GPU the host queues kernels ahead of the device; anything that needs a tensor's *value* on
the host stalls that queue until the device has caught up. On the CPU the same calls are visible
as dispatched ops: ``aten._local_scalar_dense`` (``.item()``, ``int()``, ``bool()``), ``aten.nonzero``
and indexing with a bool tensor (the index count must be known), plus ``Tensor.tolist`` (which
copies without dispatching, hence the torch-function mode). Counting them on a tiny CPU step tells
how many syncs the same step makes on a GPU.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_SCALAR_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.nonzero_static.default",
               "aten.masked_select.default", "aten.item.default"}
_INDEX_OPS = {"aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default", "aten._index_put_impl_.default"}


class _Dispatch(TorchDispatchMode):
    def __init__(self, reads: Counter):
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in _SCALAR_OPS:
            self.reads[name] += 1
        elif name in _INDEX_OPS and any(
            torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []) or []
        ):
            self.reads[f"{name}[bool]"] += 1
        return func(*args, **(kwargs or {}))


class _Function(TorchFunctionMode):
    def __init__(self, reads: Counter):
        super().__init__()
        self.reads = reads

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) == "tolist":
            self.reads["Tensor.tolist"] += 1
        return func(*args, **(kwargs or {}))


class HostReads:
    """``with HostReads() as r: ...``; then ``r.total`` and ``r.reads`` (op -> count)."""

    def __init__(self):
        self.reads: Counter = Counter()
        self._modes = (_Function(self.reads), _Dispatch(self.reads))

    def __enter__(self) -> "HostReads":
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc):
        for m in reversed(self._modes):
            m.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.reads.values())
