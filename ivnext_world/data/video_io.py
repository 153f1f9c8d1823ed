"""Video files: H.264 encoding and remuxing with PyAV, frame-accurate decoding with decord.

Decoding goes through :func:`open_video` / :func:`read_frames`, which turn every data problem into a
:class:`~ivnext_world.data.failures.BadInput` naming the file and the reason, so the datasets' single
failure policy can handle it. Readers are opened per call with one decoding thread: DataLoader
workers already give the parallelism, and a reader must never cross a fork.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import BinaryIO

import av
import decord
import numpy as np

from .failures import DECODE, EMPTY, MISSING, UNREADABLE, BadInput

# CRF 18 is visually lossless for x264; on saturated synthetic edges the yuv420p chroma subsampling,
# not the CRF, dominates the error (CRF 0 is no better there). A keyframe every 10 frames bounds the
# frames decord must decode to reach a random window, at ~20% larger files than a 1 s GOP.
DEFAULT_CRF = 18
DEFAULT_GOP = 10
# No B-frames: presentation order == decode order, so timestamps stay monotonic and remuxing
# episodes back to back (v3.0) only needs a constant offset.
_X264_OPTIONS = {"bf": "0", "preset": "fast"}


def encode_mp4(
    dest: str | os.PathLike | BinaryIO, frames: np.ndarray, fps: int, *, crf: int = DEFAULT_CRF, gop: int = DEFAULT_GOP
) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB as H.264 yuv420p mp4 at a constant ``fps``.

    Frame ``t`` gets presentation time ``t / fps`` seconds. H and W must be even (yuv420p).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise ValueError(f"cannot encode {t} frames of {h}x{w}: need T >= 1 and even H, W for yuv420p")
    with av.open(dest, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {**_X264_OPTIONS, "crf": str(crf), "g": str(gop)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush delayed packets


def encode_mp4_bytes(frames: np.ndarray, fps: int, **kwargs) -> bytes:
    """:func:`encode_mp4` into memory (the writer then stores the bytes atomically)."""
    buf = io.BytesIO()
    encode_mp4(buf, frames, fps, **kwargs)
    return buf.getvalue()


def concat_mp4(inputs: list[Path], output: Path) -> list[int]:
    """Remux mp4 files back to back into ``output`` without re-encoding; returns each input's frame count.

    The inputs must share codec parameters (true for files from :func:`encode_mp4` with equal size and
    fps); episode ``k`` then starts at the sum of the previous durations, which is what LeRobot v3.0's
    ``from_timestamp`` records.
    """
    counts: list[int] = []
    with av.open(str(output), mode="w", format="mp4") as out:
        out_stream, extradata, offset_s = None, None, 0.0
        for path in inputs:
            with av.open(str(path)) as src:
                stream = src.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(stream)
                    extradata = stream.codec_context.extradata
                elif stream.codec_context.extradata != extradata:
                    raise ValueError(f"{path}: codec parameters differ from {inputs[0]}; cannot remux, re-encode it")
                shift = round(offset_s / float(stream.time_base))
                n = 0
                for packet in src.demux(stream):
                    if packet.dts is None:  # the demuxer's empty end-of-stream packet
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = out_stream
                    out.mux(packet)
                    n += 1
                rate = stream.average_rate or stream.guessed_rate
                offset_s += n / float(rate)
                counts.append(n)
    return counts


def open_video(path: str | os.PathLike) -> decord.VideoReader:
    """A decord reader with one thread; missing, empty and undecodable files raise :class:`BadInput`."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(str(path), MISSING, "no such file")
    if path.stat().st_size == 0:
        raise BadInput(str(path), EMPTY, "0 bytes")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (RuntimeError, decord.DECORDError) as err:
        raise BadInput(str(path), UNREADABLE, _why_unreadable(path, err)) from err
    if len(reader) == 0:
        raise BadInput(str(path), UNREADABLE, "container holds no video frames")
    return reader


def read_frames(reader: decord.VideoReader, path: str | os.PathLike, indices: np.ndarray) -> np.ndarray:
    """Frames at ``indices`` (into the file) as (T, H, W, 3) uint8; decoding failures raise :class:`BadInput`."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(reader)):
        raise BadInput(str(path), DECODE, f"frame indices {indices.min()}..{indices.max()} outside 0..{len(reader) - 1}")
    try:
        return reader.get_batch(indices.tolist()).asnumpy()
    except (RuntimeError, decord.DECORDError) as err:
        raise BadInput(str(path), DECODE, _first_line(err)) from err


def _why_unreadable(path: Path, err: Exception) -> str:
    """decord prints FFmpeg's reason to stderr only; ask PyAV (same FFmpeg) for a message to report."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream in the container"
    except av.FFmpegError as av_err:
        return f"FFmpeg cannot open it: {av_err.strerror} (truncated, corrupt or not a video)"
    return _first_line(err)


def _first_line(err: Exception) -> str:
    # decord's messages look like "[hh:mm:ss] src/file.cc:123: Error: ..." plus a C++ stack.
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[0] if lines else type(err).__name__
    return re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", text)[:300]
