"""Lists of videos: Kinetics-style manifests (CSV or JSON lines) and LeRobot folders.

A malformed manifest row does not abort parsing: it becomes a :class:`VideoItem` carrying the
problem, reported like any other bad item when loaded or scanned, so one bad line among a million
is handled by the datasets' failure policy instead of killing the job at start-up.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .failures import MISMATCH, BadInput

@dataclass(frozen=True)
class VideoItem:
    """One clip: frames ``[start, start + length)`` of ``path`` (``length=None``: to the file's end).

    ``start``/``length`` describe LeRobot episodes (v3.0: a slice of a shared mp4); ``exact`` says the
    file must hold exactly ``length`` frames (v2.1: one file per episode). ``error`` holds a manifest
    parse problem; ``where`` says where the item came from, for messages.
    """

    path: Path
    label: int = -1
    start: int = 0
    length: int | None = None
    exact: bool = False
    error: str | None = None
    where: str = ""

    def frames_in(self, file_frames: int) -> int:
        """Number of frames of this clip in a file that holds ``file_frames``; raises :class:`BadInput`
        when the file disagrees with the metadata (e.g. a video shorter than its parquet table)."""
        if self.length is None:
            return file_frames
        if file_frames < self.start + self.length or (self.exact and file_frames != self.length):
            raise BadInput(str(self.path), MISMATCH, f"video has {file_frames} frames, metadata expects "
                           f"{self.length} (frames {self.start}..{self.start + self.length - 1}) for {self.where}")
        return self.length


def read_manifest(manifest: str | Path) -> tuple[list[VideoItem], list[str] | None]:
    """Parse ``manifest`` (``.csv`` or ``.jsonl``/``.json``); relative paths are resolved against its folder.

    CSV rows are ``path[,label]`` with an optional header (first field ``path``; a header may add
    columns, which are ignored). JSON lines are objects with ``path`` and optional ``label``.
    Labels are integers, or class names mapped to their index in the sorted class list (returned as
    the second value; None when labels are integers). Missing labels are -1.
    """
    manifest = Path(manifest)
    suffix = manifest.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(manifest)
    elif suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(manifest)
    else:
        raise ValueError(f"{manifest}: unknown manifest format {suffix!r}; use .csv or .jsonl")
    raw_labels = [label for _, _, label, err in rows if err is None and label is not None]
    classes = sorted({str(x) for x in raw_labels}) if any(not _is_int(x) for x in raw_labels) else None
    class_index = {name: i for i, name in enumerate(classes or [])}
    items = []
    for lineno, path, label, err in rows:
        where = f"{manifest}:{lineno}"
        if err is not None:
            items.append(VideoItem(Path(path or where), error=err, where=where))
            continue
        p = Path(path)
        p = p if p.is_absolute() else manifest.parent / p
        if label is None:
            idx = -1
        else:
            idx = class_index[str(label)] if classes is not None else int(label)
        items.append(VideoItem(p, label=idx, where=where))
    return items, classes


def _is_int(x) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    try:
        int(str(x).strip())
        return True
    except ValueError:
        return False


# Each row: (line number, path or None, raw label or None, parse error or None).
_Row = tuple[int, str | None, object, str | None]


def _csv_rows(manifest: Path) -> list[_Row]:
    rows: list[_Row] = []
    with open(manifest, newline="", encoding="utf-8") as f:
        lines = [(n, r) for n, r in enumerate(csv.reader(f), start=1) if r and any(c.strip() for c in r)]
    lines = [(n, r) for n, r in lines if not r[0].lstrip().startswith("#")]
    path_col, label_col, strict = 0, 1, True
    if lines and lines[0][1][0].strip().lower() == "path":
        header = [c.strip().lower() for c in lines.pop(0)[1]]
        path_col, label_col, strict = 0, (header.index("label") if "label" in header else None), False
    for n, r in lines:
        r = [c.strip() for c in r]
        if strict and len(r) > 2:
            rows.append((n, r[0] or None, None, f"expected 'path[,label]', got {len(r)} fields"))
        elif not r[path_col]:
            rows.append((n, None, None, "empty path"))
        else:
            label = r[label_col] if label_col is not None and label_col < len(r) and r[label_col] != "" else None
            rows.append((n, r[path_col], label, None))
    return rows


def _jsonl_rows(manifest: Path) -> list[_Row]:
    rows: list[_Row] = []
    with open(manifest, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                rows.append((n, None, None, f"invalid JSON: {err.msg}"))
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("path"), str) or not obj["path"]:
                rows.append((n, None, None, "expected an object with a non-empty string 'path'"))
                continue
            rows.append((n, obj["path"], obj.get("label"), None))
    return rows


def lerobot_items(dataset, camera_keys: list[str] | None = None, episodes: list[int] | None = None) -> list[VideoItem]:
    """One :class:`VideoItem` per (episode, camera), episode-major, of a LeRobot folder (v2.1 or
    v3.0) or an open :class:`~ivnext_world.data.lerobot.LeRobotDataset`; labels are -1."""
    from .lerobot import LeRobotDataset

    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)
    root = ds.root
    keys = camera_keys or ds.camera_keys
    items = []
    for ep in episodes if episodes is not None else ds.episode_indices:
        for key in keys:
            path, start_s, _ = ds.video_ref(ep, key)
            items.append(VideoItem(path, start=int(round(start_s * ds.fps)), length=ds.episode_length(ep),
                                   exact=ds.version == "v2.1", where=f"{root}: episode {ep} / {key}"))
    return items
