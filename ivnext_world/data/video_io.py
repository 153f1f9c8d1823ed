"""Video files: H.264 encoding and remuxing with PyAV; frame-accurate decoding with decord, PyAV or torchcodec.

Decoding goes through :func:`open_video` / :func:`read_frames`, which turn every data problem into a
:class:`~ivnext_world.data.failures.BadInput` naming the file and the reason, so the datasets' single
failure policy can handle it. Readers are opened per call with one decoding thread: DataLoader
workers already give the parallelism, and a reader must never cross a fork.

Backends (``decoder=``): ``"decord"`` is the fastest random-access reader, but its bundled FFmpeg 4.1
has no AV1 decoder (LeRobot's default codec) and it fails on some small frame sizes. ``"pyav"``
(FFmpeg with dav1d, always installed) and ``"torchcodec"`` (optional; the system's FFmpeg) decode
what decord cannot. ``"auto"`` (the default) uses decord and falls back per file to PyAV, then
torchcodec, logging once per reason. Every backend returns the same frames: upright (rotation
metadata applied, as players do) at the stream's declared size, and exactly the requested indices.
"""
from __future__ import annotations

import functools
import io
import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterable

import av
import numpy as np

from .failures import DECODE, EMPTY, MISSING, UNREADABLE, BadInput

log = logging.getLogger(__name__)

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
    if t == 0:
        raise ValueError(f"cannot encode {t} frames: need T >= 1")
    encode_frames_mp4(dest, (av.VideoFrame.from_ndarray(f, format="rgb24") for f in frames), int(fps), (h, w),
                      crf=crf, gop=gop)


def encode_frames_mp4(
    dest: str | os.PathLike | BinaryIO, frames: Iterable[av.VideoFrame], fps: int | Fraction, size: tuple[int, int], *,
    crf: int = DEFAULT_CRF, gop: int = DEFAULT_GOP, threads: int = 0, fixed_gop: bool = False,
) -> int:
    """Stream PyAV ``frames`` of ``size`` (H, W) (any pixel format; converted to yuv420p) into an H.264
    mp4 at a constant ``fps`` (a Fraction keeps 30000/1001 exact); returns the number of frames written.

    Frame ``t`` gets presentation time ``t / fps``; H and W must be even (yuv420p). ``threads``:
    x264 threads (0: its default, about 1.5 per core; give 1 when several encoders run in parallel).
    ``fixed_gop``: keyframes exactly every ``gop`` frames (no extra ones at scene cuts).
    """
    h, w = size
    if h % 2 or w % 2:
        raise ValueError(f"cannot encode {h}x{w} frames: need even H, W for yuv420p")
    n = 0
    with av.open(dest, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {**_X264_OPTIONS, "crf": str(crf), "g": str(gop), **({"threads": str(threads)} if threads else {}),
                          **({"sc_threshold": "0"} if fixed_gop else {})}
        time_base = Fraction(1) / Fraction(fps)
        for frame in frames:
            # Constant frame rate: frame n at n / fps, whatever timestamps a decoded input frame carried;
            # and no picture type, which x264 would obey (an input's keyframes would become extra ones).
            frame.pts, frame.time_base, frame.pict_type = n, time_base, 0
            container.mux(stream.encode(frame))
            n += 1
        container.mux(stream.encode())  # flush delayed packets
    return n


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


# ---------------------------------------------------------------------------------------------------
# Decoding

DECODERS = ("auto", "decord", "pyav", "torchcodec")
# Readable names for the codecs users bring; anything else is shown by its FFmpeg name.
_CODEC_NAMES = {"h264": "H.264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9", "vp8": "VP8", "mpeg4": "MPEG-4 part 2",
                "mjpeg": "Motion JPEG", "prores": "ProRes"}
_BACKEND_NAMES = {"decord": "decord", "pyav": "PyAV", "torchcodec": "torchcodec"}


@dataclass(frozen=True)
class StreamInfo:
    """What the container declares about its first video stream (read with PyAV, no decoder needed
    except for ``rotation``, which FFmpeg attaches to decoded frames).

    ``width``/``height``: the picture as stored; ``rotation``: degrees counter-clockwise that turn it
    upright (FFmpeg's display matrix; 0, 90, 180 or -90); ``reorder``: the stream has B-frames
    (presentation order differs from decode order); ``declared_frames``: the header's frame count
    (0 when the container does not say), more than a reader finds in a truncated file.
    """

    codec: str
    width: int
    height: int
    rotation: int = 0
    reorder: bool = False
    declared_frames: int = 0

    @property
    def label(self) -> str:
        return f"{_name(self.codec)} ({self.codec})"

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the upright frames every backend returns."""
        return (self.width, self.height) if self.rotation % 180 else (self.height, self.width)


def _name(codec: str) -> str:
    return _CODEC_NAMES.get(codec, codec.upper())


def probe_video(path: str | os.PathLike) -> StreamInfo:
    """The file's :class:`StreamInfo`; missing, empty and unopenable files raise :class:`BadInput`.

    Cached per process by (path, size, mtime): datasets open the same episode file for every window.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(str(path), MISSING, "no such file")
    st = path.stat()
    if st.st_size == 0:
        raise BadInput(str(path), EMPTY, "0 bytes")
    return _probe(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _probe(path: str, size: int, mtime_ns: int) -> StreamInfo:
    try:
        container = av.open(path)
    except av.FFmpegError as err:
        raise BadInput(path, UNREADABLE, f"FFmpeg cannot open it: {err.strerror} (truncated, corrupt or not a video)") from err
    with container:
        if not container.streams.video:
            raise BadInput(path, UNREADABLE, "no video stream in the container")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.codec.canonical_name if ctx is not None else "unknown"
        info = StreamInfo(codec, stream.width, stream.height, 0, bool(ctx is not None and ctx.has_b_frames), stream.frames)
        if ctx is None:
            return info
        ctx.thread_count = 1
        try:  # PyAV exposes the display matrix only on decoded frames
            for frame in container.decode(stream):
                rotation = _normal_rotation(getattr(frame, "rotation", 0))  # PyAV >= 13 reads the display matrix
                return StreamInfo(codec, stream.width, stream.height, rotation, info.reorder,
                                  info.declared_frames)
        except av.FFmpegError:
            pass  # undecodable first frame: the reader reports it when that frame is asked for
    return info


def _normal_rotation(deg: float) -> int:
    r = int(round(deg / 90)) * 90 % 360
    return r - 360 if r > 180 else r  # 270 -> -90, -180 -> 180


def check_decoder(decoder: str) -> str:
    """Validate a ``decoder`` setting up front (datasets call it in ``__init__``): unknown names raise
    ``ValueError``, an explicitly chosen backend that cannot be imported raises ``ImportError``."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder != "auto":
        _import_backend(decoder)
    return decoder


@functools.lru_cache(maxsize=None)
def _backend_status(name: str) -> str | None:
    """None when backend ``name`` imports, else why not."""
    try:
        _import_backend(name)
    except ImportError as err:
        return str(err)
    return None


def _import_backend(name: str):
    if name == "pyav":
        return av
    if name == "decord":
        try:
            import decord
        except ImportError as err:  # no wheel for this platform / Python
            raise ImportError(f"decoder='decord' needs decord (pip install decord): {err}") from err
        return decord
    try:
        from torchcodec.decoders import VideoDecoder
    except (ImportError, OSError, RuntimeError) as err:  # RuntimeError: FFmpeg shared libraries not found
        raise ImportError(
            "decoder='torchcodec' needs torchcodec: pip install 'ivnext_world[torchcodec]' (a release matching "
            f"your torch) and the FFmpeg 4-7 shared libraries (apt-get install ffmpeg). Import failed: {_first_line(err)}"
        ) from err
    return VideoDecoder


class _BackendFailed(Exception):
    """A backend cannot open or decode this file. ``key`` groups failures with one cause, for the
    once-per-reason log; ``remember`` marks files like this one (same codec or same size) so decord is
    not tried on them again in this process."""

    def __init__(self, reason: str, key: str | None = None, remember: tuple | None = None):
        super().__init__(reason)
        self.reason, self.key, self.remember = reason, key or reason, remember


# Per process: what decord is known not to handle, as ("codec", name) or ("size", w, h, rotation).
_DECORD_CANNOT: set[tuple] = set()
_LOGGED: set[str] = set()


def _log_once(key: str, message: str) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.warning("%s (logged once per reason)", message)


class _Decord:
    name = "decord"

    def __init__(self, path: str, info: StreamInfo):
        decord = _import_backend("decord")
        self.info = info
        if info.codec == "hevc" and info.reorder:
            # Measured with decord 0.6.0: on x265's default open GOPs its seeks land up to a GOP away from
            # the wanted frame (frame 5 read as frame 8), silently. Sequential reads are right; ours are not.
            raise _BackendFailed("its random access returns wrong frames on HEVC with B-frames (open GOPs)",
                                 "decord is not frame-accurate on HEVC with B-frames")
        try:
            self.reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        except (RuntimeError, decord.DECORDError) as err:
            if "cannot find video stream" in str(err):
                raise _BackendFailed(f"its FFmpeg 4.1 has no {_name(info.codec)} decoder", f"decord has no {info.codec} decoder",
                                     ("codec", info.codec)) from err
            raise _BackendFailed(f"cannot open it: {_first_line(err)}", "decord cannot open a file") from err
        self.num_frames, self.fps = len(self.reader), float(self.reader.get_avg_fps())

    def read(self, indices: np.ndarray) -> np.ndarray:
        decord = _import_backend("decord")
        size = ("size", self.info.width, self.info.height, self.info.rotation)
        try:
            frames = self.reader.get_batch(indices.tolist()).asnumpy()
        except (RuntimeError, decord.DECORDError) as err:
            if "DECORDArrayCopyFromTo" in str(err):  # its frame buffer has the wrong size
                raise _BackendFailed(f"decord 0.6 mis-sizes {self.info.shape[0]}x{self.info.shape[1]} frames",
                                     "decord mis-sizes frames of some small sizes", size) from err
            raise _BackendFailed(f"decoding failed: {_first_line(err)}", "decord decode error") from err
        if frames.shape[1:] != (*self.info.shape, 3):  # a silent crop or a broken rotation
            raise _BackendFailed(f"it returned {frames.shape[1]}x{frames.shape[2]}x{frames.shape[3]} frames for a "
                                 f"{self.info.shape[0]}x{self.info.shape[1]} stream", "decord returns frames of the wrong size",
                                 size)
        return frames


class _TorchCodec:
    name = "torchcodec"

    def __init__(self, path: str, info: StreamInfo):
        VideoDecoder = _import_backend("torchcodec")
        try:
            # "exact" scans the file once, so frame i is the i-th frame in presentation order.
            self.decoder = VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact", device="cpu")
        except (RuntimeError, ValueError) as err:
            raise _BackendFailed(f"cannot open it: {_first_line(err)}", "torchcodec cannot open a file") from err
        meta = self.decoder.metadata
        self.num_frames, self.fps = len(self.decoder), float(meta.average_fps or 0.0)

    def read(self, indices: np.ndarray) -> np.ndarray:
        try:
            return self.decoder.get_frames_at(indices.tolist()).data.numpy()  # rotation applied (torchcodec >= 0.11)
        except (RuntimeError, ValueError, IndexError) as err:
            raise _BackendFailed(f"decoding failed: {_first_line(err)}", "torchcodec decode error") from err


@dataclass(frozen=True)
class _PyAVIndex:
    """Frame ``i`` is the packet with the i-th smallest pts; ``keys``: the keyframes' frame indices
    (ascending). Seeks go to a keyframe's pts: its dts is too early (FFmpeg's mp4 index then lands on
    the keyframe before, a whole GOP of extra decoding), and a seek that lands past the wanted frame
    is retried from an earlier keyframe."""

    pts: np.ndarray
    keys: np.ndarray
    fps: float


@functools.lru_cache(maxsize=256)
def _pyav_index(path: str, size: int, mtime_ns: int) -> _PyAVIndex:
    pts, key_pts = [], []
    with av.open(path) as container:
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                if packet.pts is None:  # the demuxer's empty end-of-stream packet
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
        except av.FFmpegError:
            pass  # damaged container: frames before the damage stay readable
        rate = stream.average_rate or stream.guessed_rate
    pts_sorted = np.sort(np.asarray(pts, dtype=np.int64))
    keys = np.sort(np.searchsorted(pts_sorted, np.asarray(key_pts, dtype=np.int64)))
    return _PyAVIndex(pts_sorted, keys, float(rate or 0.0))


class _PyAV:
    """Frame-accurate random access with PyAV: seek to the keyframe at or before a frame, decode up to
    it, and keep decoding forward when the next wanted frame needs no new keyframe."""

    name = "pyav"

    def __init__(self, path: str, info: StreamInfo):
        self.path, self.info = path, info
        st = os.stat(path)
        try:
            self.index = _pyav_index(path, st.st_size, st.st_mtime_ns)
            self.container = av.open(path)
        except av.FFmpegError as err:
            raise _BackendFailed(f"cannot open it: {err.strerror}", "PyAV cannot open a file") from err
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:
            raise _BackendFailed(f"this build has no {info.label} decoder", f"PyAV has no {info.codec} decoder")
        self.stream.codec_context.thread_count = 1
        self.num_frames, self.fps = len(self.index.pts), self.index.fps
        self._where = {int(p): i for i, p in enumerate(self.index.pts)}
        self._frames = None  # live decode iterator
        self._next = 0  # index of the frame the live iterator yields next
        self._last: tuple[int, np.ndarray] | None = None

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.info.shape, 3), np.uint8)
        for j in np.argsort(indices, kind="stable"):
            out[j] = self._frame(int(indices[j]))
        return out

    def _frame(self, t: int) -> np.ndarray:
        if self._last is not None and self._last[0] == t:
            return self._last[1]
        k = int(np.searchsorted(self.index.keys, t, side="right")) - 1  # keyframe at or before t
        if k < 0:
            raise _BackendFailed(f"frame {t} precedes the first keyframe", "PyAV: frame before the first keyframe")
        if self._frames is None or t < self._next or self.index.keys[k] > self._next:
            self._seek(k)
        fresh = True
        while True:
            frame = self._decode_next(t)
            i = self._where.get(frame.pts) if frame.pts is not None else None
            if i is None:
                raise _BackendFailed(f"decoded a frame with timestamp {frame.pts}, which no packet has", "PyAV: unknown timestamp")
            if fresh and i > t:  # the seek landed past the keyframe we wanted (tiny GOPs): start earlier
                if k == 0:
                    raise _BackendFailed(f"frame {t} cannot be reached: decoding starts at frame {i}", "PyAV: frame unreachable")
                k = max(0, k - max(1, (len(self.index.keys) - k) // 8))
                self._seek(k)
                continue
            fresh = False
            self._next = i + 1
            if i == t:
                if frame.is_corrupt:
                    raise _BackendFailed(f"frame {t} is damaged (the decoder flagged it corrupt)", "PyAV: corrupt frame")
                arr = frame.to_ndarray(format="rgb24")
                if self.info.rotation:
                    arr = np.ascontiguousarray(np.rot90(arr, self.info.rotation // 90))
                if arr.shape[:2] != self.info.shape:
                    raise _BackendFailed(f"frame {t} is {arr.shape[0]}x{arr.shape[1]}, the stream declares "
                                         f"{self.info.shape[0]}x{self.info.shape[1]}", "PyAV: frame size changes")
                self._last = (t, arr)
                return arr
            if i > t:
                raise _BackendFailed(f"the decoder skipped frame {t} (damaged data)", "PyAV: frame skipped")

    def _seek(self, k: int) -> None:
        self.container.seek(int(self.index.pts[self.index.keys[k]]), stream=self.stream, backward=True, any_frame=False)
        self._frames, self._next = self.container.decode(self.stream), int(self.index.keys[k])

    def _decode_next(self, t: int):
        try:
            return next(self._frames)
        except StopIteration:
            self._frames = None
            raise _BackendFailed(f"the stream ended before frame {t} (truncated?)", "PyAV: stream ended early") from None
        except av.FFmpegError as err:
            self._frames = None
            raise _BackendFailed(f"decoding frame {t} failed: {err.strerror}", "PyAV decode error") from err


_BACKENDS = {"decord": _Decord, "pyav": _PyAV, "torchcodec": _TorchCodec}


class VideoReader:
    """An open video (see :func:`open_video`): ``len(reader)`` frames at ``reader.fps``;
    :meth:`read` returns upright (T, H, W, 3) uint8 frames. ``backend`` names the library in use."""

    def __init__(self, path: Path, info: StreamInfo, decoder: str):
        self.path, self.info, self.decoder = path, info, decoder
        self.tried: list[tuple[str, str]] = []  # (backend, why it failed) for this file
        if decoder != "auto":
            chain = [decoder]
        else:
            chain = []
            known = {("codec", info.codec), ("size", info.width, info.height, info.rotation)} & _DECORD_CANNOT
            if _backend_status("decord") is not None:
                _log_once("decord missing", "decord is not installed; decoding with PyAV")
            elif known:
                self.tried.append(("decord", "known not to handle files like this one"))
            else:
                chain.append("decord")
            # torchcodec only if installed, checked when reached: importing it costs seconds.
            chain += ["pyav", "torchcodec?"]
        self._chain = chain
        self._impl = None
        self._next_backend(UNREADABLE)

    @property
    def backend(self) -> str:
        return self._impl.name

    @property
    def fps(self) -> float:
        return self._impl.fps

    def get_avg_fps(self) -> float:  # decord's name, kept for callers written against decord
        return self._impl.fps

    def __len__(self) -> int:
        return self._impl.num_frames

    def __getitem__(self, index: int) -> np.ndarray:
        return self.read([index])[0]

    def get_batch(self, indices) -> "_Frames":
        """decord's batch read, kept for callers written against ``decord.VideoReader``
        (``reader.get_batch(idx).asnumpy()``); new code calls :meth:`read`."""
        return self.read(indices).view(_Frames)

    def read(self, indices) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as (T, H, W, 3) uint8, upright."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        while True:
            n = self._impl.num_frames
            if len(indices) and (indices.min() < 0 or indices.max() >= n):
                cut = self.info.declared_frames > n
                raise BadInput(str(self.path), DECODE, f"frame indices {indices.min()}..{indices.max()} outside 0..{n - 1} of "
                               f"this {self.info.label} stream" + (f" (cut short: its header declares "
                                                                    f"{self.info.declared_frames} frames)" if cut else ""))
            try:
                return self._impl.read(indices)
            except _BackendFailed as fail:
                self._failed(fail)
                self._next_backend(DECODE)

    def _drop_unavailable(self) -> None:
        while self._chain and self._chain[0].endswith("?"):
            name = self._chain.pop(0)[:-1]
            if _backend_status(name) is None:
                self._chain.insert(0, name)
                return

    def _next_backend(self, kind: str) -> None:
        self._drop_unavailable()
        while self._chain:
            name = self._chain.pop(0)
            try:
                self._impl = _BACKENDS[name](str(self.path), self.info)
                return
            except _BackendFailed as fail:
                self._impl = _Failed(name)
                self._failed(fail)
            self._drop_unavailable()
        raise BadInput(str(self.path), kind, self._explain())

    def _failed(self, fail: _BackendFailed) -> None:
        name = self._impl.name
        self.tried.append((name, fail.reason))
        if name == "decord" and fail.remember is not None:
            _DECORD_CANNOT.add(fail.remember)
        self._drop_unavailable()
        if self._chain:
            _log_once(f"{name}: {fail.key}", f"{_BACKEND_NAMES[name]} cannot decode {self.path} ({fail.reason}); "
                      f"using {_BACKEND_NAMES[self._chain[0]]} for it"
                      + (" and files like it" if name == "decord" and fail.remember else ""))

    def _explain(self) -> str:
        """The codec, what each backend said, and what would fix it."""
        said = "; ".join(f"{_BACKEND_NAMES[b]}: {why}" for b, why in self.tried)
        if self.decoder != "auto":
            hint = "decoder='auto' falls back to PyAV and torchcodec when decord cannot decode a file"
            if self.decoder != "decord":
                hint = "try decoder='auto' or another backend; if none works the file is damaged"
            return f"{self.info.label} could not be decoded ({said}); {hint}"
        pyav_has = self.info.codec != "unknown" and _has_pyav_decoder(self.info.codec)
        if not pyav_has:
            hint = (f"install a PyAV build with a {_name(self.info.codec)} decoder (PyPI wheels of av>=12 include dav1d for AV1)"
                    + (" or install torchcodec (pip install 'ivnext_world[torchcodec]'), which uses the system FFmpeg"
                       if _backend_status("torchcodec") is not None else ""))
        else:
            hint = "PyAV has a decoder for this codec, so the file itself is damaged: re-encode it from a good copy or drop it"
        return f"{self.info.label} could not be decoded by any backend ({said}); fix: {hint}"


class _Frames(np.ndarray):
    """An ndarray that also answers decord's ``asnumpy()``."""

    def asnumpy(self) -> np.ndarray:
        return self.view(np.ndarray)


class _Failed:
    """Placeholder while switching backends, so failure messages can name the one that failed."""

    def __init__(self, name: str):
        self.name = name


@functools.lru_cache(maxsize=None)
def _has_pyav_decoder(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "r")
        return True
    except Exception:  # av raises UnknownCodecError (a ValueError) or FFmpegError depending on version
        return False


def open_video(path: str | os.PathLike, decoder: str = "auto") -> VideoReader:
    """Open ``path`` for frame-accurate reads with ``decoder`` (one of :data:`DECODERS`).

    ``"auto"``: decord, falling back per file to PyAV and then torchcodec (if installed) when decord
    cannot open or decode it, returns frames of the wrong size, or is known (in this process) not
    to handle files of its codec or size; each reason is logged once. Missing, empty and unopenable
    files raise :class:`BadInput` (reason ``missing file``, ``empty file``, ``unreadable video``);
    when no backend can decode a file the message names the codec, each backend's error and the fix.
    """
    check_decoder(decoder)
    path = Path(path)
    info = probe_video(path)
    return VideoReader(path, info, decoder)


def read_frames(reader: VideoReader, path: str | os.PathLike, indices: np.ndarray) -> np.ndarray:
    """Frames at ``indices`` (into the file) as (T, H, W, 3) uint8, upright; decoding failures raise
    :class:`BadInput` (reason ``decode error``). ``path`` is kept for callers; the reader knows its file."""
    return reader.read(indices)


def _first_line(err: Exception) -> str:
    # decord: "[hh:mm:ss] src/file.cc:123: [hh:mm:ss] src/other.cc:45: Check failed: ..." plus a C++ stack;
    # torchcodec: "function, /path/File.cpp:1493, message". Keep the message.
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[0] if lines else type(err).__name__
    text = re.sub(r"^(\[[\d:]+\]\s+\S+:\d+:\s*)+", "", text)
    text = re.sub(r"^\w+, \S+\.(?:cpp|cc|h):\d+, ", "", text)
    return text[:300]
