"""Re-encode a video corpus for cluster training: H.264, short side ``short_side``, a keyframe every ``gop`` frames.

Random access costs up to one GOP of decoding per clip, and every decoder reads H.264, so a corpus of
AV1 / HEVC / VP9 / long-GOP files becomes cheap and uniform to load (``bench/bench_decode.py`` shows
the decode time per clip before and after). Each output is written to a temporary file, fsynced and
renamed, so an output that exists is complete: a rerun skips it (resume), after checking the output
folder was made with the same settings. Inputs that cannot be decoded are listed in ``report.json``
and left out of the new manifest; they do not stop the run.

Output layout: ``<out>/videos/<path relative to the manifest or folder>`` (``.mp4`` appended unless
already there), ``<out>/<manifest name>`` in the input's format (CSV rows keep their other columns,
JSON lines their other keys; a folder gets ``manifest.csv``), ``<out>/report.json``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..utils.io import atomic_write_text, fsync_dir
from .video_io import DEFAULT_CRF, encode_frames_mp4

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
SETTINGS_FILE = "prepare.json"


@dataclass(frozen=True)
class PrepareSettings:
    short_side: int = 256  # outputs are never upscaled: a shorter video keeps its size (rounded to even)
    gop: int = 16
    crf: int = DEFAULT_CRF


@dataclass(frozen=True)
class _Job:
    src: str
    dst: str


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) with the short side ``short_side`` (never larger than the input), aspect kept, both even."""
    scale = min(1.0, short_side / min(height, width))
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def reencode_video(src: str | os.PathLike, dst: str | os.PathLike, settings: PrepareSettings, threads: int = 0) -> dict:
    """Decode ``src`` (any codec PyAV reads), turn it upright, resize, and write H.264 to ``dst``
    atomically. Raises ``ValueError`` naming the problem when ``src`` cannot be decoded."""
    src, dst = Path(src), Path(dst)
    try:
        container = av.open(str(src))
    except av.FFmpegError as err:
        raise ValueError(f"cannot open: {err.strerror}") from err
    with container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise ValueError("this PyAV build has no decoder for its codec")
        if threads:
            stream.codec_context.thread_count = threads
        fps = stream.average_rate or stream.guessed_rate
        if not fps:
            raise ValueError("unknown frame rate")
        fps = Fraction(fps).limit_denominator(1001)
        frames = _upright_resized(container.decode(stream), settings.short_side)
        first = next(frames, None)
        if first is None:
            raise ValueError("no decodable frame")
        size = (first.height, first.width)
        tmp = dst.with_name(f".{dst.name}.tmp")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                n = encode_frames_mp4(f, _chain(first, frames), fps, size, crf=settings.crf, gop=settings.gop,
                                      threads=threads, fixed_gop=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_dir(dst.parent)
    return {"frames": n, "size": list(size), "fps": float(fps)}


def _chain(first, rest):
    yield first
    yield from rest


def _upright_resized(decoded, short_side: int):
    """Decoded frames -> upright frames with the short side ``short_side``; decoding errors and frames
    the decoder flags as corrupt become ``ValueError`` (a half-good output would hide the damage)."""
    i = -1
    try:
        for i, frame in enumerate(decoded):
            if frame.is_corrupt:
                raise ValueError(f"frame {i} is damaged (the decoder flagged it corrupt)")
            rotation = getattr(frame, "rotation", 0)  # PyAV >= 13 reads the display matrix
            k = round(rotation / 90) % 4 if rotation else 0
            h, w = (frame.width, frame.height) if k % 2 else (frame.height, frame.width)  # upright size
            oh, ow = output_size(h, w, short_side)
            if not k:  # straight to the encoder's pixel format, no RGB round trip
                yield frame.reformat(width=ow, height=oh, format="yuv420p", interpolation="AREA")
                continue
            small = frame.reformat(width=oh if k % 2 else ow, height=ow if k % 2 else oh, format="rgb24",
                                   interpolation="AREA").to_ndarray()
            yield av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(small, k)), format="rgb24")
    except av.FFmpegError as err:
        raise ValueError(f"decoding failed after {i + 1} frames: {err.strerror}") from err


def _run_job(job: _Job, settings: PrepareSettings, threads: int) -> tuple[_Job, dict | None, str | None]:
    """One video; a problem with the input becomes the reason string in the report."""
    try:
        return job, reencode_video(job.src, job.dst, settings, threads), None
    except ValueError as err:
        return job, None, str(err)


def _output_rel(src: Path, base: Path) -> Path:
    try:
        rel = src.resolve().relative_to(base.resolve())
    except ValueError:  # an absolute manifest path outside the manifest's folder
        rel = Path("_abs") / src.resolve().relative_to(src.resolve().anchor)
    return rel if rel.suffix.lower() == ".mp4" else rel.with_name(rel.name + ".mp4")


# Manifest rows, in input order: ("video", path, raw), ("header", None, raw) or ("bad", None, raw);
# raw is what gets written back (CSV fields, a JSON object, or the unparsable line).
_Row = tuple[str, "str | None", object]


def _read_source(source: Path) -> tuple[str, list[_Row], Path]:
    """(format, rows, folder that relative paths start from)."""
    if source.is_dir():
        if (source / "meta" / "info.json").is_file():
            raise ValueError(f"{source} is a LeRobot dataset: its parquet timestamps and info.json describe the "
                             "videos, so re-encode it with LeRobot's tools, not as a folder of clips")
        videos = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                        and not p.name.startswith("."))
        return "folder", [("video", str(p.relative_to(source)), None) for p in videos], source
    suffix = source.suffix.lower()
    rows: list[_Row] = []
    if suffix == ".csv":
        with open(source, newline="", encoding="utf-8") as f:
            lines = [r for r in csv.reader(f) if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
        for i, r in enumerate(lines):
            if i == 0 and r[0].strip().lower() == "path":
                rows.append(("header", None, r))
            elif r[0].strip():
                rows.append(("video", r[0].strip(), r))
            else:
                rows.append(("bad", None, ",".join(r)))
        return "csv", rows, source.parent
    if suffix in (".jsonl", ".json"):
        for line in source.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            ok = isinstance(obj, dict) and isinstance(obj.get("path"), str) and obj["path"]
            rows.append(("video", obj["path"], obj) if ok else ("bad", None, line))
        return "jsonl", rows, source.parent
    raise ValueError(f"{source}: give a .csv or .jsonl manifest or a folder of videos, got {suffix!r}")


def prepare_videos(source: str | os.PathLike, out: str | os.PathLike, settings: PrepareSettings = PrepareSettings(),
                   workers: int = 1, progress: bool = True) -> dict:
    """Re-encode every video of ``source`` (manifest or folder) into ``out`` with ``workers`` processes;
    returns the report (also written to ``out/report.json``)."""
    from tqdm import tqdm

    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such manifest or folder")
    fmt, rows, base = _read_source(source)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / SETTINGS_FILE
    if saved.is_file() and json.loads(saved.read_text()) != asdict(settings):
        raise ValueError(f"{out} was prepared with {saved.read_text().strip()}, not {asdict(settings)}: "
                         "use another --out (or delete it) to change the settings")
    atomic_write_text(saved, json.dumps(asdict(settings)))

    jobs: dict[str, _Job] = {}  # by source file: a video listed twice is encoded once
    for kind, path, _ in rows:
        if kind == "video":
            src = base / path  # an absolute path stays absolute
            jobs.setdefault(str(src), _Job(str(src), str(out / "videos" / _output_rel(src, base))))
    failed = {j.src: "no such file" for j in jobs.values() if not Path(j.src).is_file()}
    done_before = [j for j in jobs.values() if j.src not in failed and Path(j.dst).is_file()]
    todo = [j for j in jobs.values() if j.src not in failed and not Path(j.dst).is_file()]
    threads = 1 if workers > 1 else 0  # one x264 / decoder thread per process when processes run side by side
    start = time.perf_counter()
    encoded = 0
    bar = tqdm(total=len(todo), desc="prepare videos", unit="video", disable=not progress or not todo)
    pool = None
    if workers <= 1:
        outcomes = (_run_job(j, settings, threads) for j in todo)
    else:
        import multiprocessing as mp

        # spawn: the parent may hold decord, tqdm's monitor thread or torch state; workers need none of it.
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        outcomes = (f.result() for f in as_completed([pool.submit(_run_job, j, settings, threads) for j in todo]))
    try:
        for job, _, err in outcomes:
            if err is None:
                encoded += 1
            else:
                failed[job.src] = err
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    manifest = _write_manifest(out, source, fmt, rows, base, jobs, failed)
    report = {
        "source": str(source), "out": str(out), "manifest": str(manifest), "settings": asdict(settings),
        "videos": len(jobs), "encoded": encoded, "already_done": len(done_before),
        "failed": [{"path": p, "reason": r} for p, r in sorted(failed.items())],
        "bad_rows": [raw for kind, _, raw in rows if kind == "bad"],
        "seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    return report


def _write_manifest(out: Path, source: Path, fmt: str, rows: list[_Row], base: Path, jobs: dict[str, _Job],
                    failed: dict[str, str]) -> Path:
    """The input's rows whose video was prepared, pointing at the outputs (relative to ``out``)."""
    kept = [(str(Path(jobs[str(base / path)].dst).relative_to(out)), raw) for kind, path, raw in rows
            if kind == "video" and str(base / path) not in failed]
    if fmt == "jsonl":
        target = out / source.name
        atomic_write_text(target, "".join(json.dumps({**raw, "path": p}) + "\n" for p, raw in kept))
        return target
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = [raw for kind, _, raw in rows if kind == "header"]
    if fmt == "folder" or header:
        writer.writerow(header[0] if header else ["path"])
    for p, raw in kept:
        writer.writerow([p, *(raw[1:] if raw else [])])
    target = out / ("manifest.csv" if fmt == "folder" else source.name)
    atomic_write_text(target, buf.getvalue())
    return target
