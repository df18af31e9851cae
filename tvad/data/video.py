"""Reading video: probe, frames by index or by fps, resizing by Qwen2.5-VL's rules.

decord reads by frame index (fast random access); PyAV is the fallback where decord has no
wheel (e.g. macOS arm64) or cannot open a file. Every failure is a `VideoError` that names the
file and the problem, never a deep traceback from the decoder.

    info = probe("clip.mp4")                      # VideoInfo(num_frames, fps, height, width)
    x = read_frames("clip.mp4", fps=1.0)          # uint8 (T, H, W, 3), resampled to 1 fps
    x = read_frames("clip.mp4", size=(476, 868))  # resized to exactly (H, W)
    x = read_frames("clip.mp4", size="qwen", max_pixels=224 * 224)  # smart_resize
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

from tvad.io import atomic_path

# Qwen2.5-VL's defaults (transformers' qwen2_vl image processing): a 14-px patch merged 2x2 → 28.
IMAGE_FACTOR = 28
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28


class VideoError(ValueError):
    """A video that cannot be read: missing, empty, corrupt, or an impossible request."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # decodable frames
    fps: float  # average frame rate
    height: int  # frame height in pixels
    width: int  # frame width in pixels


def smart_resize(height: int, width: int, factor: int = IMAGE_FACTOR,
                 min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen2.5-VL's resize rule: sides multiples of `factor`, area within [min, max] pixels.

    Delegates to transformers' own implementation (the one the processor applies) so the two can
    never drift; e.g. smart_resize(476, 868) == (476, 868), a 34 x 62 patch grid.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as _sr  # heavy: lazy

    return tuple(int(v) for v in _sr(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels))


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such video file")
    if p.is_dir():
        raise VideoError(f"{p}: is a directory, not a video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes)")
    return p


def _decord():
    try:
        import decord  # noqa: F401  (optional: no wheel on some platforms)

        return decord
    except Exception:  # no wheel for this platform, or a broken install: fall back to PyAV
        return None


def _pyav_info(p: Path) -> VideoInfo:
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise VideoError(f"{p}: no video stream")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0) or 25.0
            n = sum(1 for _ in c.decode(video=0))
            return VideoInfo(n, fps, s.codec_context.height, s.codec_context.width)
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"{p}: cannot decode video ({type(e).__name__}: {e})") from None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate and size of a video file. Raises `VideoError` naming the file."""
    p = _check_path(path)
    decord = _decord()
    if decord is not None:
        try:
            vr = decord.VideoReader(str(p), num_threads=1)
            n = len(vr)
            if n > 0:
                h, w = vr[0].shape[:2]
                return VideoInfo(n, float(vr.get_avg_fps()), int(h), int(w))
        except Exception:
            pass  # decord refuses some containers/codecs that PyAV reads; try it before failing
    info = _pyav_info(p)
    if info.num_frames == 0:
        raise VideoError(f"{p}: video has no decodable frames")
    return info


def sample_indices(num_frames: int, src_fps: float, fps: float | None) -> np.ndarray:
    """Frame indices that resample a `num_frames` video at `src_fps` to `fps` (nearest frame).

    `fps=None` keeps every frame. Sampling is at t = k / fps for k = 0, 1, ...: the frame shown at
    that instant, i.e. index floor(t * src_fps + 1e-6).
    """
    if fps is None:
        return np.arange(num_frames)
    if fps <= 0:
        raise VideoError(f"fps must be positive, got {fps}")
    duration = num_frames / src_fps
    k = np.arange(int(math.floor(duration * fps + 1e-9)))
    idx = np.floor(k * src_fps / fps + 1e-6).astype(int)
    return idx[idx < num_frames] if len(idx) else np.zeros(1, dtype=int)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of uint8 (T, H, W, 3) frames to (T, size[0], size[1], 3)."""
    import torch  # heavy: imported only to resize
    import torch.nn.functional as F

    h, w = int(size[0]), int(size[1])
    if frames.shape[1:3] == (h, w):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def read_frames(path: str | os.PathLike, indices: Sequence[int] | None = None, fps: float | None = None,
                size: tuple[int, int] | str | None = None, max_pixels: int = MAX_PIXELS,
                min_pixels: int = MIN_PIXELS) -> np.ndarray:
    """Decode frames of a video file as uint8 (T, H, W, 3) RGB.

    indices: frame indices to read (default all); exclusive with `fps`.
    fps:     resample to this frame rate (e.g. 1.0 for the paper's clips).
    size:    (H, W) to resize to exactly, or "qwen" for `smart_resize` under `max_pixels`.
    """
    p = _check_path(path)
    if indices is not None and fps is not None:
        raise VideoError(f"{p}: give either indices or fps, not both")
    info = probe(p)
    if fps is not None:
        indices = sample_indices(info.num_frames, info.fps, fps)
    idx = np.arange(info.num_frames) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise VideoError(f"{p}: no frame indices requested")
    bad = idx[(idx < 0) | (idx >= info.num_frames)]
    if bad.size:
        raise VideoError(f"{p}: frame index {int(bad[0])} out of range (video has {info.num_frames} frames)")
    frames = _decode(p, idx)
    if size is not None:
        if isinstance(size, str):
            if size != "qwen":
                raise VideoError(f"size must be (H, W) or 'qwen', got {size!r}")
            size = smart_resize(info.height, info.width, min_pixels=min_pixels, max_pixels=max_pixels)
        frames = resize_frames(frames, size)
    return frames


def _decode(p: Path, idx: np.ndarray) -> np.ndarray:
    decord = _decord()
    if decord is not None:
        try:
            vr = decord.VideoReader(str(p), num_threads=1)
            return vr.get_batch(idx.tolist()).asnumpy()
        except Exception:
            pass  # fall through to PyAV, which reports the error precisely
    wanted = {int(i) for i in idx}
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(str(p)) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i in wanted:
                    got[i] = fr.to_ndarray(format="rgb24")
                if len(got) == len(wanted):
                    break
    except Exception as e:
        raise VideoError(f"{p}: cannot decode video ({type(e).__name__}: {e})") from None
    missing = wanted - set(got)
    if missing:
        raise VideoError(f"{p}: truncated video, frame {min(missing)} could not be decoded")
    return np.stack([got[int(i)] for i in idx])


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 18) -> Path:
    """Encode uint8 (T, H, W, 3) frames to an H.264 mp4 with PyAV (atomic: temp file, then rename).

    H and W must be even (yuv420p). Used by the synthetic generator and the overlay writer. One
    encoder thread: x264's frame threads make the bitstream depend on the machine's load (the same
    frames encoded under load gave other bytes and other decoded pixels), and the generated dataset
    must be the same on every run for the chain's numbers to be.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise VideoError(f"{path}: no frames to write")
    p = Path(path)
    rate = Fraction(fps).limit_denominator(1000)
    with atomic_path(p) as tmp, av.open(str(tmp), mode="w") as c:  # tmp keeps ".mp4": the muxer's format
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.codec_context.thread_count = 1
        if s.codec_context.name == "libx264":
            s.options = {"crf": str(crf), "preset": "fast", "threads": "1"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return p
