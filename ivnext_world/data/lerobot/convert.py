"""Convert a LeRobot v2.1 folder (what :class:`LeRobotWriter` writes) to the v3.0 layout.

v3.0 packs many episodes into one parquet file and one mp4 per camera, and finds an episode through
``meta/episodes/chunk-XXX/file-XXX.parquet`` rows: ``dataset_from_index``/``dataset_to_index`` (global
frame rows), ``data/chunk_index``/``data/file_index`` and, per camera, ``videos/<key>/chunk_index``,
``file_index``, ``from_timestamp`` and ``to_timestamp`` (the episode's slice of the shared video).
Videos are remuxed, not re-encoded, so frames are bit-identical to the v2.1 ones. Our depth files and
camera-parameter columns are carried over; a dataset written with the old column names comes out
with the current ones (see :func:`.layout.legacy_renames`). Column and file names follow LeRobot's
``convert_dataset_v21_to_v30``; file sizes are bounded by an episode count instead of megabytes.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..video_io import concat_mp4
from . import layout as L
from .read import LeRobotDataset


def convert_v21_to_v30(src: str | Path, dst: str | Path, *, episodes_per_file: int | None = None) -> Path:
    """Write a v3.0 copy of the v2.1 dataset ``src`` into the new folder ``dst``; returns ``dst``.

    Args:
        episodes_per_file: episodes packed into each data parquet / mp4 (None: all into one file).
    """
    ds, dst = LeRobotDataset(src), Path(dst)
    if ds.version != L.V21:
        raise ValueError(f"{src} is {ds.version}, expected {L.V21}")
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} exists and is not empty; convert into a new folder")
    eps = ds.episode_indices
    per_file = episodes_per_file or max(len(eps), 1)
    groups = [eps[k : k + per_file] for k in range(0, len(eps), per_file)]
    stats = {r["episode_index"]: {ds.renames.get(k, k): v for k, v in r["stats"].items()}
             for r in L.read_jsonl(ds.root / L.EPISODES_STATS_JSONL)}

    rows: list[dict] = []
    frames_before = 0
    for file_number, group in enumerate(groups):
        chunk_index, file_index = divmod(file_number, ds.chunks_size)
        where = {"chunk_index": chunk_index, "file_index": file_index}
        data_path = dst / L.V30_DATA_PATH.format(**where)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables([ds.renamed(pq.read_table(_v21_data_path(ds, ep))) for ep in group]), data_path)
        slices = {key: _concat_videos(ds, group, key, dst / L.V30_VIDEO_PATH.format(video_key=key, **where))
                  for key in ds.camera_keys}
        for n, ep in enumerate(group):
            length = ds.episode_length(ep)
            row = {
                "episode_index": ep,
                "tasks": [ds.task(ep)],
                "length": length,
                "data/chunk_index": chunk_index,
                "data/file_index": file_index,
                "dataset_from_index": frames_before,
                "dataset_to_index": frames_before + length,
            }
            for key in ds.camera_keys:
                start, end = slices[key][n]
                row |= {f"videos/{key}/chunk_index": chunk_index, f"videos/{key}/file_index": file_index,
                        f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": end}
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            row |= {f"stats/{feat}/{name}": v for feat, s in stats[ep].items() for name, v in s.items()}
            rows.append(row)
            frames_before += length
            for key in ds.depth_keys:
                target = dst / L.DEPTH_PATH.format(
                    episode_chunk=ep // ds.chunks_size, depth_key=ds.depth_keys[key], episode_index=ep)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ds.depth_path(ep, key), target)

    episodes_path = dst / L.V30_EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes_path)
    tasks = [r["task"] for r in sorted(L.read_jsonl(ds.root / L.TASKS_JSONL), key=lambda r: r["task_index"])]
    _write_tasks_parquet(dst / L.V30_TASKS_PATH, tasks)
    L.write_json(dst / L.STATS_JSON, L.aggregate_stats(list(stats.values())))
    L.write_json(dst / L.INFO_PATH, _v30_info(ds.info, per_file))
    return dst


def _v21_data_path(ds: LeRobotDataset, ep: int) -> Path:
    return ds.root / ds.info["data_path"].format(episode_chunk=ep // ds.chunks_size, episode_index=ep)


def _concat_videos(ds: LeRobotDataset, group: list[int], key: str, out: Path) -> list[tuple[float, float]]:
    """Remux the group's ``key`` videos into ``out``; each episode's (from_timestamp, to_timestamp)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [ds.video_ref(ep, key)[0] for ep in group]
    counts = concat_mp4(paths, out)
    slices, start = [], 0
    for ep, path, n in zip(group, paths, counts):
        if n != ds.episode_length(ep):
            raise ValueError(f"{path}: {n} video frames but episode {ep} has {ds.episode_length(ep)} rows")
        # Constant frame rate: an episode spans exactly n / fps seconds of the shared file.
        slices.append((start / ds.fps, (start + n) / ds.fps))
        start += n
    return slices


def _write_tasks_parquet(path: Path, tasks: list[str]) -> None:
    """``meta/tasks.parquet`` as LeRobot writes it from pandas: ``task_index`` column, task string as
    the index (declared in the pandas metadata so ``pd.read_parquet`` restores it)."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path)


def _v30_info(info: dict, episodes_per_file: int) -> dict:
    out = json.loads(json.dumps(info))  # deep copy
    out["codebase_version"] = L.V30
    out.pop("total_chunks", None)
    out.pop("total_videos", None)
    out["data_path"] = L.V30_DATA_PATH
    out["video_path"] = L.V30_VIDEO_PATH
    # LeRobot bounds new files by size (its defaults below, used when it appends); we packed by count.
    out["data_files_size_in_mb"] = 100
    out["video_files_size_in_mb"] = 500
    out["episodes_per_file"] = episodes_per_file
    for ft in out["features"].values():
        if ft["dtype"] != "video":
            ft["fps"] = out["fps"]
    return out
