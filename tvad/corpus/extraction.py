"""Frame-wise extraction (paper §3.3, steps 1 and 3): every frame of a clip asked once through an
annotator, answers kept in the append-only cache (`extract`), and the anomaly-focused view whose
anomaly mask stays sharp while the rest is Gaussian-blurred (`focus_image`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from tvad.corpus.annotators import FRAME_PROMPT, Annotator, FrameRecord, frame_prompt, prompt_hash, record_key
from tvad.corpus.cache import FrameCache


# -- anomaly-focused enhancement -----------------------------------------------------------------

def focus_image(frame: np.ndarray, mask: np.ndarray, sigma: float = 6.0, dilate: int = 3) -> np.ndarray:
    """Keep `mask` (H, W; bool or ids) sharp (slightly dilated), Gaussian-blur everything else."""
    frame = np.asarray(frame, dtype=np.uint8)
    m = np.asarray(mask) > 0
    if dilate > 0 and m.any():
        m = ndimage.binary_dilation(m, iterations=int(dilate))
    blurred = np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(radius=float(sigma))))
    return np.where(m[..., None], frame, blurred).astype(np.uint8)


# -- extraction -----------------------------------------------------------------------------------

@dataclass
class ExtractStats:
    asked: int = 0  # annotator calls made now
    cached: int = 0  # answers reused from the cache
    skipped_no_anomaly: int = 0  # focus view: frames without anomaly pixels (not asked)
    ok: int = 0
    invalid_answer: int = 0
    request_failed: int = 0
    instances: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: "ExtractStats") -> None:
        for k in ("asked", "cached", "skipped_no_anomaly", "ok", "invalid_answer", "request_failed", "instances"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.reasons.update(other.reasons)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("asked", "cached", "skipped_no_anomaly", "ok", "invalid_answer",
                                           "request_failed", "instances")}
        d["failure_reasons"] = dict(self.reasons.most_common(10))
        return d


def _reason(err: str | None) -> str:
    """A failure reason without its variable tail (for counting)."""
    e = (err or "unknown").split(" (")[0]
    return e.split(":")[0] if len(e) > 60 else e


def extract(video: Any, annotator: Annotator, cache: FrameCache, *, view: str = "full",
            frames: Sequence[int] | None = None, template: str = FRAME_PROMPT, blur_sigma: float = 6.0,
            stats: ExtractStats | None = None) -> list[FrameRecord]:
    """Frame records of one clip (view "full" or "focus"), asking only what the cache lacks.

    Focus view: frames without anomaly-mask pixels are not asked (nothing stays sharp). A video
    that cannot be read gives "request_failed" records naming the problem, not an exception.
    """
    st = stats if stats is not None else ExtractStats()
    ph = prompt_hash(template)
    idx = list(range(int(video.num_frames))) if frames is None else [int(f) for f in frames]
    out: list[FrameRecord] = []
    masks = None
    if view == "focus":
        try:
            masks = np.asarray(video.read_masks(idx))
        except Exception as e:  # unreadable masks: every frame fails with the reason
            masks = e
    elif view != "full":
        raise ValueError(f"view must be 'full' or 'focus', got {view!r}")
    todo: list[int] = []
    for k, f in enumerate(idx):
        if isinstance(masks, np.ndarray) and not masks[k].any():
            st.skipped_no_anomaly += 1
            continue
        key = record_key(video.name, f, annotator.name, ph, view)
        if cache.wants(key):
            todo.append(k)
        else:
            st.cached += 1
    images: Any = None
    if todo and annotator.needs_pixels:
        try:
            images = np.asarray(video.read_frames([idx[k] for k in todo]))
        except Exception as e:
            images = e
    prompt = frame_prompt(int(video.size[0]), int(video.size[1]), template)
    for j, k in enumerate(todo):
        f = idx[k]
        if isinstance(masks, Exception) or isinstance(images, Exception):
            err = masks if isinstance(masks, Exception) else images
            rec = FrameRecord(video.name, f, annotator.name, ph, view, status="request_failed",
                              error=f"cannot read the clip: {type(err).__name__}: {err}")
        else:
            img = None if images is None else images[j]
            focus = None if masks is None else masks[k]
            if img is not None and focus is not None:
                img = focus_image(img, focus, sigma=blur_sigma)
            rec = annotator.describe_frame(img, prompt, video=video, frame=f, focus=focus, prompt_hash=ph)
            rec.video, rec.frame, rec.prompt_hash, rec.view = video.name, f, ph, view
        cache.append(rec)
        st.asked += 1
    for f in idx:
        rec = cache.get(record_key(video.name, f, annotator.name, ph, view))
        if rec is None:
            continue
        out.append(rec)
        setattr(st, rec.status, getattr(st, rec.status) + 1)
        st.instances += len(rec.instances)
        if not rec.ok:
            st.reasons[_reason(rec.error)] += 1
    return out
