"""One bad-input policy for every dataset that reads video files (clips, trajectories).

Loading code raises :class:`BadInput` for problems with the *data* (missing or corrupt files, clips too
short, malformed manifest rows, frame-count mismatches); anything else (a bug) propagates untouched.
:class:`FailurePolicy` then either raises :class:`VideoLoadError` at once (``on_error="raise"``) or
replaces the item by the next valid one (``on_error="skip"``), warning once per bad item, remembering
it so it is never retried, and raising :class:`VideoLoadError` once failures pass a limit, because a
dataset that is mostly broken should stop a run, not silently shrink it.

Counts live in the process that loads: with DataLoader workers each worker holds its own copy of the
dataset, counts its own failures and applies the limits to them; the parent's ``failures`` only see
what was loaded in the parent (``num_workers=0``, or :meth:`scan`-style checks).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

# Failure kinds, the keys of ``FailurePolicy.failures``.
MISSING = "missing file"
EMPTY = "empty file"
UNREADABLE = "unreadable video"
DECODE = "decode error"
TOO_SHORT = "clip too short"
MISMATCH = "frame count mismatch"
BAD_ROW = "bad manifest row"
BAD_DEPTH = "unreadable depth"


class BadInput(Exception):
    """A data problem with one item: ``kind`` (one of the constants above) and a readable ``detail``."""

    def __init__(self, path: str, kind: str, detail: str):
        super().__init__(f"{path}: {kind}: {detail}")
        self.path, self.kind, self.detail = str(path), kind, detail


class VideoLoadError(RuntimeError):
    """Raised when a bad item must stop the run; the message names the paths and reasons."""


class VideoLoadWarning(UserWarning):
    """Emitted once per skipped item."""


@dataclass(frozen=True)
class BadItem:
    index: int
    path: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.index}] {self.path}: {self.kind} ({self.detail})"


class FailurePolicy:
    """Decides what a dataset does when an item cannot be loaded.

    Args:
        on_error: ``"skip"`` (replace by the next valid index, deterministic) or ``"raise"``.
        max_failures: raise once more than this many distinct items failed in this process.
        max_failure_fraction: raise once failed items / dataset size exceeds this (per process, so
            with ``W`` workers each worker reaches it only when its own share is that broken).
        max_examples: how many :class:`BadItem` examples to keep for messages and inspection.
    """

    def __init__(
        self,
        on_error: str = "skip",
        max_failures: int | None = 50,
        max_failure_fraction: float | None = 0.1,
        max_examples: int = 20,
    ):
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.on_error = on_error
        self.max_failures = max_failures
        self.max_failure_fraction = max_failure_fraction
        self.max_examples = max_examples
        self.failures: Counter[str] = Counter()  # kind -> number of distinct bad items
        self.examples: list[BadItem] = []
        self.bad_indices: set[int] = set()

    @property
    def num_failures(self) -> int:
        return sum(self.failures.values())

    def load(self, index: int, num_items: int, load_fn: Callable[[int], Any]) -> Any:
        """``load_fn(index)``, or under ``"skip"`` the first of ``index+1, index+2, ...`` (wrapping)
        that loads. Known-bad indices are passed over without another attempt."""
        for offset in range(num_items):
            i = (index + offset) % num_items
            if i in self.bad_indices:
                continue
            try:
                return load_fn(i)
            except BadInput as err:
                self._record(i, err, num_items)
        raise VideoLoadError(f"no loadable item left: all {num_items} items failed. {self._summary()}")

    def _record(self, index: int, err: BadInput, num_items: int) -> None:
        item = BadItem(index, err.path, err.kind, err.detail)
        if self.on_error == "raise":
            raise VideoLoadError(f"cannot load item {item}") from err
        self.bad_indices.add(index)
        self.failures[err.kind] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(item)
        n = self.num_failures
        if self.max_failures is not None and n > self.max_failures:
            raise VideoLoadError(f"{n} items failed to load (max_failures={self.max_failures}). {self._summary()}")
        if self.max_failure_fraction is not None and n / num_items > self.max_failure_fraction:
            raise VideoLoadError(
                f"{n}/{num_items} items failed to load (> max_failure_fraction={self.max_failure_fraction}). "
                f"{self._summary()}"
            )
        warnings.warn(f"skipping item {item}; using the next valid item instead", VideoLoadWarning, stacklevel=3)

    def _summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.failures.most_common())
        shown = "; ".join(str(e) for e in self.examples[:5])
        return f"Failures by reason: {counts or 'none'}. Examples: {shown or 'none'}"


class PolicyDataset:
    """Mixin for map-style datasets whose items load through a :class:`FailurePolicy`.

    Subclasses set ``self.policy`` and implement ``__len__`` and ``_load(index)``; bad items are then
    skipped or raised by the one policy, and counted in :attr:`failures`.
    """

    policy: FailurePolicy

    @property
    def failures(self):
        """Counter of bad items by reason, in this process (each DataLoader worker counts its own)."""
        return self.policy.failures

    @property
    def failure_examples(self) -> list[BadItem]:
        return self.policy.examples

    def __getitem__(self, index: int):
        return self.policy.load(index, len(self), self._load)
