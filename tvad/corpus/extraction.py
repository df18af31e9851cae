"""Frame-wise extraction (paper §3.3, steps 1 and 3): every frame of a clip asked once through an
annotator, answers kept in the append-only cache (`extract` for one clip, `extract_all` for a
corpus: one stream of requests, `max_concurrency` in flight, `tvad.corpus.inflight`), records read
back by key in frame order (`collect`), and the anomaly-focused view whose anomaly mask stays sharp
while the rest is Gaussian-blurred (`focus_image`)."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from tvad.corpus.annotators import FRAME_PROMPT, Annotator, FrameRecord, frame_prompt, prompt_hash, record_key
from tvad.corpus.cache import FrameCache
from tvad.corpus.inflight import AskReport, Request, ask, report_failures, workers_for


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


def frame_requests(video: Any, annotator: Annotator, cache: FrameCache, *, view: str = "full",
                   frames: Sequence[int] | None = None, template: str = FRAME_PROMPT, blur_sigma: float = 6.0,
                   stats: ExtractStats | None = None) -> Iterator[Request]:
    """The requests of one clip and view that the cache still lacks (a generator: the clip's frames
    (T, H, W, 3) and masks (T, H, W) are read when the first request is wanted, so a stream over many
    clips holds at most the clips whose requests are in flight). Counts `cached`,
    `skipped_no_anomaly` into `stats` and, through each request, `asked`.

    Focus view: frames without anomaly-mask pixels are not asked (nothing stays sharp). A clip whose
    frames or masks cannot be read gives "request_failed" records naming the problem, asked of nobody.
    """
    st = stats if stats is not None else ExtractStats()
    ph = prompt_hash(template)
    idx = _frames(video, frames)
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
    if not todo:
        return
    images: Any = None
    if annotator.needs_pixels:
        try:
            images = np.asarray(video.read_frames([idx[k] for k in todo]))
        except Exception as e:
            images = e
    prompt = frame_prompt(int(video.size[0]), int(video.size[1]), template)

    def counted(rec: FrameRecord) -> None:
        st.asked += 1

    for j, k in enumerate(todo):
        f = idx[k]
        key = record_key(video.name, f, annotator.name, ph, view)
        if isinstance(masks, Exception) or isinstance(images, Exception):
            err = masks if isinstance(masks, Exception) else images
            failed = FrameRecord(video.name, f, annotator.name, ph, view, status="request_failed",
                                 error=f"cannot read the clip: {type(err).__name__}: {err}")
            yield Request(key, lambda rec=failed: rec, counted)
            continue
        img = None if images is None else images[j]
        focus = None if masks is None else masks[k]
        yield Request(key, functools.partial(_ask_one, annotator, video, f, view, ph, prompt, img, focus,
                                             blur_sigma), counted)


def _ask_one(annotator: Annotator, video: Any, frame: int, view: str, ph: str, prompt: str,
             img: np.ndarray | None, focus: np.ndarray | None, blur_sigma: float) -> FrameRecord:
    """One frame through the annotator (in a worker thread when requests are in flight)."""
    if img is not None and focus is not None:
        img = focus_image(img, focus, sigma=blur_sigma)
    rec = annotator.describe_frame(img, prompt, video=video, frame=frame, focus=focus, prompt_hash=ph)
    rec.video, rec.frame, rec.prompt_hash, rec.view = video.name, frame, ph, view
    return rec


def collect(video: Any, annotator: Annotator, cache: FrameCache, *, view: str = "full",
            frames: Sequence[int] | None = None, template: str = FRAME_PROMPT,
            stats: ExtractStats | None = None) -> list[FrameRecord]:
    """The cached records of one clip and view, in frame order (whatever order they arrived in);
    counts their statuses, instances and failure reasons into `stats`."""
    st = stats if stats is not None else ExtractStats()
    ph = prompt_hash(template)
    out: list[FrameRecord] = []
    for f in _frames(video, frames):
        rec = cache.get(record_key(video.name, f, annotator.name, ph, view))
        if rec is None:
            continue
        out.append(rec)
        setattr(st, rec.status, getattr(st, rec.status) + 1)
        st.instances += len(rec.instances)
        if not rec.ok:
            st.reasons[_reason(rec.error)] += 1
    return out


def _frames(video: Any, frames: Sequence[int] | None) -> list[int]:
    return list(range(int(video.num_frames))) if frames is None else [int(f) for f in frames]


def extract(video: Any, annotator: Annotator, cache: FrameCache, *, view: str = "full",
            frames: Sequence[int] | None = None, template: str = FRAME_PROMPT, blur_sigma: float = 6.0,
            stats: ExtractStats | None = None, max_concurrency: int | None = None) -> list[FrameRecord]:
    """Frame records of one clip (view "full" or "focus"), asking only what the cache lacks, with
    `max_concurrency` requests in flight (default: the annotator's, 1 for the oracle and local).

    Focus view: frames without anomaly pixels are not asked (nothing stays sharp). A video that
    cannot be read gives "request_failed" records naming the problem, not an exception.
    """
    st = stats if stats is not None else ExtractStats()
    reqs = frame_requests(video, annotator, cache, view=view, frames=frames, template=template,
                          blur_sigma=blur_sigma, stats=st)
    report_failures(ask(reqs, cache, workers=workers_for(annotator, max_concurrency)), annotator.name)
    return collect(video, annotator, cache, view=view, frames=frames, template=template, stats=st)


def extract_all(videos: Iterable[Any], annotator: Annotator, cache: FrameCache, *,
                views: Sequence[str] = ("full",), template: str = FRAME_PROMPT, blur_sigma: float = 6.0,
                stats: Mapping[str, ExtractStats] | None = None, max_concurrency: int | None = None,
                progress: bool = False) -> AskReport:
    """Ask what the cache lacks for every clip and view (clip by clip, its views in `views` order),
    as one stream with `max_concurrency` requests in flight across clip boundaries (so a short clip
    or a sparse focus view does not leave the endpoint idle). Counts `asked`, `cached` and
    `skipped_no_anomaly` into `stats[view]`; read the records back with `collect`."""
    st = {v: ExtractStats() for v in views} if stats is None else stats
    videos = list(videos)

    def stream() -> Iterator[Request]:
        for i, v in enumerate(videos):
            if progress:
                print(f"[corpus] asking {i + 1}/{len(videos)} {v.name}", flush=True)
            for view in views:
                yield from frame_requests(v, annotator, cache, view=view, template=template,
                                          blur_sigma=blur_sigma, stats=st[view])

    rep = ask(stream(), cache, workers=workers_for(annotator, max_concurrency))
    report_failures(rep, annotator.name)
    return rep
