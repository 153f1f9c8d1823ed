"""Read a LeRobot dataset folder, v2.1 or v3.0, through one small interface.

:class:`LeRobotDataset` exposes per-episode access only (tables, video references, depth, task);
frame decoding and windowing live in :mod:`ivnext_world.data.trajectory` and
:mod:`ivnext_world.data.video_clips`. Not to be confused with LeRobot's own ``LeRobotDataset``
(a per-frame torch dataset); this one does not depend on the ``lerobot`` package.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import layout as L


class LeRobotDataset:
    """Episode-level reader for ``root`` (the folder holding ``meta/info.json``).

    The version comes from ``info["codebase_version"]``; anything but v2.1 / v3.0 is an error.
    Episodes are addressed by their ``episode_index`` (see :attr:`episode_indices`).

    Column names are always the current ones (:mod:`.layout`): a dataset written with the old names
    (``observation.images.scene.intrinsics``, ``observation.ee_pos``) is read as if it had been
    written now; :attr:`renames` lists what was mapped and ``info`` shows the current names.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        info_path = self.root / L.INFO_PATH
        if not info_path.is_file():
            raise FileNotFoundError(
                f"{self.root} is not a LeRobot dataset: {info_path} is missing "
                "(a folder being written by LeRobotWriter gets it from finalize())"
            )
        self.info: dict = L.read_json(info_path)
        self.renames: dict[str, str] = L.legacy_renames(self.info)
        if self.renames:
            self.info["features"] = {self.renames.get(k, k): v for k, v in self.info["features"].items()}
        self.version: str = self.info.get("codebase_version", "<missing>")
        if self.version == L.V21:
            self._episodes = self._load_v21_episodes()
        elif self.version == L.V30:
            self._episodes = self._load_v30_episodes()
        else:
            raise ValueError(
                f"{info_path}: codebase_version {self.version!r} is not supported; this reader handles "
                f"{L.V21!r} and {L.V30!r} (convert older datasets with LeRobot's converters first)"
            )
        self._data_cache: tuple[Path, pa.Table] | None = None  # v3.0: the last data file read
        self._drop_depth_without_files()

    def _drop_depth_without_files(self) -> None:
        """Forget declared depth when its whole folder is absent: LeRobot's own v2.1 -> v3.0 converter
        copies ``info.json`` (with our ``depth_features``) but not our ``depth/`` folder."""
        declared = self.info.get("depth_features")
        if not declared:
            return
        top = self.root / self.info.get("depth_path", L.DEPTH_PATH).split("/")[0]
        if not top.is_dir():
            warnings.warn(f"{self.root}: meta/info.json declares depth {sorted(declared)} but {top} is missing; "
                          "reading without depth (LeRobot's own converter does not copy depth/: copy it from "
                          "the source dataset to restore depth)")
            self.info["depth_features"] = {}

    # -- dataset-level ------------------------------------------------------------------------

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def camera_keys(self) -> list[str]:
        """Video features (LeRobot's image-folder features are not supported)."""
        return [k for k, ft in self.features.items() if ft["dtype"] == "video"]

    @property
    def depth_keys(self) -> dict[str, str]:
        """camera key -> depth key, for cameras with stored depth."""
        return {ft["camera"]: k for k, ft in self.info.get("depth_features", {}).items()}

    @property
    def episode_indices(self) -> list[int]:
        return sorted(self._episodes)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_frames(self) -> int:
        return sum(e["length"] for e in self._episodes.values())

    @property
    def chunks_size(self) -> int:
        return int(self.info.get("chunks_size", L.DEFAULT_CHUNKS_SIZE))

    # -- per episode --------------------------------------------------------------------------

    def _episode(self, i: int) -> dict:
        try:
            return self._episodes[i]
        except KeyError:
            raise IndexError(f"{self.root}: no episode {i} (episodes: {self.episode_indices[:10]}...)") from None

    def episode_length(self, i: int) -> int:
        return int(self._episode(i)["length"])

    def task(self, i: int) -> str:
        return self._episode(i)["tasks"][0]

    def episode_table(self, i: int) -> dict[str, np.ndarray]:
        """All parquet columns of episode ``i``: scalars as (T,), vector columns as (T, D) float32."""
        ep = self._episode(i)
        if self.version == L.V21:
            path = self.root / self.info["data_path"].format(episode_chunk=i // self.chunks_size, episode_index=i)
            table = pq.read_table(path)
        else:
            path = self.root / self.info["data_path"].format(chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"])
            if self._data_cache is None or self._data_cache[0] != path:
                self._data_cache = (path, pq.read_table(path))
            file_table = self._data_cache[1]
            table = file_table.filter(pc.equal(file_table["episode_index"], i))
        if table.num_rows != ep["length"]:
            raise ValueError(f"{path}: episode {i} has {table.num_rows} rows but the metadata says {ep['length']}")
        return {self.renames.get(name, name): L.column_to_numpy(table[name]) for name in table.column_names}

    def renamed(self, table: pa.Table) -> pa.Table:
        """``table`` (read straight from this dataset's files) with old column names replaced."""
        if not self.renames:
            return table
        return table.rename_columns([self.renames.get(n, n) for n in table.column_names])

    def video_ref(self, i: int, key: str) -> tuple[Path, float, float]:
        """(mp4 path, start s, end s) of camera ``key`` in episode ``i``: v2.1 the whole file,
        v3.0 a slice of a file shared with other episodes. Frame t is at ``start + timestamp[t]``."""
        ep = self._episode(i)
        if key not in self.camera_keys:
            raise KeyError(f"{key!r} is not a video feature of {self.root} (cameras: {self.camera_keys})")
        if self.version == L.V21:
            rel = self.info["video_path"].format(episode_chunk=i // self.chunks_size, video_key=key, episode_index=i)
            return self.root / rel, 0.0, ep["length"] / self.fps
        prefix = f"videos/{key}/"
        rel = self.info["video_path"].format(
            video_key=key, chunk_index=ep[prefix + "chunk_index"], file_index=ep[prefix + "file_index"]
        )
        return self.root / rel, float(ep[prefix + "from_timestamp"]), float(ep[prefix + "to_timestamp"])

    def depth(self, i: int, key: str) -> np.ndarray | None:
        """(T, H, W) float32 depth in metres for camera ``key`` (or its depth key), None if not stored."""
        dkey = self.depth_keys.get(key, key)
        if dkey not in self.info.get("depth_features", {}):
            return None
        path = self.depth_path(i, key)
        with np.load(path) as npz:
            depth = npz[L.DEPTH_NPZ_ARRAY]
        if depth.ndim != 3 or len(depth) != self.episode_length(i) or depth.dtype != np.float32:
            raise ValueError(f"{path}: expected ({self.episode_length(i)}, H, W) float32 depth, got {depth.shape} {depth.dtype}")
        return depth

    def depth_path(self, i: int, key: str) -> Path:
        dkey = self.depth_keys.get(key, key)
        template = self.info.get("depth_path", L.DEPTH_PATH)
        return self.root / template.format(episode_chunk=i // self.chunks_size, depth_key=dkey, episode_index=i)

    # -- loading metadata ---------------------------------------------------------------------

    def _load_v21_episodes(self) -> dict[int, dict]:
        rows = L.read_jsonl(self.root / L.EPISODES_JSONL)
        return {int(r["episode_index"]): {"length": int(r["length"]), "tasks": list(r["tasks"])} for r in rows}

    def _load_v30_episodes(self) -> dict[int, dict]:
        paths = sorted((self.root / "meta/episodes").glob("*/*.parquet"))
        if not paths:
            raise FileNotFoundError(f"{self.root}/meta/episodes/ holds no parquet files (v3.0 episode metadata)")
        tables = [pq.read_table(p) for p in paths]
        keep = [c for c in tables[0].column_names if not c.startswith("stats/")]
        rows = pa.concat_tables([t.select(keep) for t in tables]).to_pylist()
        tasks = None
        episodes = {}
        for r in rows:
            if not r.get("tasks"):  # some writers omit it: fall back to the first frame's task index
                tasks = tasks if tasks is not None else self._load_v30_tasks()
                first = pq.read_table(self.root / self.info["data_path"].format(
                    chunk_index=r["data/chunk_index"], file_index=r["data/file_index"]), columns=["episode_index", "task_index"])
                first = first.filter(pc.equal(first["episode_index"], r["episode_index"]))
                r["tasks"] = [tasks[first["task_index"][0].as_py()]]
            r["length"] = int(r.get("length") or r["dataset_to_index"] - r["dataset_from_index"])
            episodes[int(r["episode_index"])] = r
        return episodes

    def _load_v30_tasks(self) -> dict[int, str]:
        """task_index -> task from ``meta/tasks.parquet``; LeRobot writes it from pandas with the task
        string as the index, which pyarrow sees as a ``task`` or ``__index_level_0__`` column."""
        table = pq.read_table(self.root / L.V30_TASKS_PATH)
        meta = table.schema.metadata or {}
        index_cols = json.loads(meta[b"pandas"]).get("index_columns", []) if b"pandas" in meta else []
        candidates = ["task"] + [c for c in index_cols if isinstance(c, str)] + ["__index_level_0__"]
        name = next((c for c in candidates if c in table.column_names), None)
        if name is None:
            raise ValueError(f"{self.root / L.V30_TASKS_PATH}: no task string column in {table.column_names}")
        return dict(zip(table["task_index"].to_pylist(), table[name].to_pylist()))
