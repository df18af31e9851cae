"""Stage 2's clips: a corpus record's clip reference -> its frames (`ClipResolver`) -> the model's
inputs for it (`ClipStore`: the AHD heatmap and the merged video tokens, computed once and cached
as safetensors), or another heatmap in their place (`HeatmapView`: ground truth for the oracle,
zeros for "w/o AHD"); and the run's dialogue corpora.

    clips = ClipStore(model, ClipResolver(videos), run.dir / "stage2" / "clips")
    inputs = clips.get(record["clip"])                   # ClipInputs: heat (T', h, w), video tokens

The heat is the AHD's at its own resolution (`tvad.model.detector.clip_heatmap`: the frames at the
backbone's `max_pixels`), also under a video token budget that shrinks the tokens' grid; the model
resamples it to the token grid where the RAE reads it (`PromptInjector.rae_inputs`). The heatmap
views keep that: their maps come on the stored heat's grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tvad.corpus import load_corpus
from tvad.data.clips import resize_masks
from tvad.data.video import probe, read_frames, resize_frames
from tvad.io import atomic_path
from tvad.model.ahd import pair_merge
from tvad.model.backbone import vision_hash
from tvad.model.tvad import TVAD, ClipInputs, TVADError, encode_dialogue
from tvad.train.features import feature_grid


class ClipMissing(TVADError):
    """A corpus record whose clip cannot be found any more."""


class ClipResolver:
    """A corpus clip reference ({name, source_video, frame_indices, num_frames, path, ...}) -> uint8
    frames. Looks, in order: an array given by clip name; a video record (tvad.data) named like
    the clip (all its frames) or like its source video (the clip's frame indices); the file at
    `path`. Nothing found: `ClipMissing` naming the clip."""

    def __init__(self, videos: Sequence[Any] | Mapping[str, Any] = (), arrays: Mapping[str, np.ndarray] | None = None):
        if isinstance(videos, Mapping):
            self.videos = dict(videos)
        else:
            self.videos = {str(getattr(v, "name", "")): v for v in videos}
        self.arrays = dict(arrays or {})

    def record(self, clip: Mapping[str, Any]) -> tuple[Any, list[int] | None] | None:
        """The clip's video record and the frame indices to read from it (None: all its frames): the
        record named like the clip, else its source video at the clip's frame indices; None if neither."""
        n = int(clip.get("num_frames", 0))
        idx = [int(i) for i in clip.get("frame_indices", [])]
        v = self.videos.get(str(clip.get("name", "")))
        if v is not None:
            return v, (None if int(getattr(v, "num_frames", n)) == n or not idx else idx)
        src = self.videos.get(str(clip.get("source_video", "")))
        return (src, idx) if src is not None and idx else None

    def __call__(self, clip: Mapping[str, Any]) -> np.ndarray:
        name = str(clip.get("name", ""))
        n = int(clip.get("num_frames", 0))
        idx = [int(i) for i in clip.get("frame_indices", [])]
        if name in self.arrays:
            return np.asarray(self.arrays[name])
        found = self.record(clip)
        if found is not None:
            v, pick = found
            return np.asarray(v.read_frames(pick))
        p = Path(str(clip.get("path") or ""))
        if str(clip.get("path") or "") and p.is_file():

            total = probe(p).num_frames
            if total == n or not idx:
                return np.asarray(read_frames(p))
            if idx and max(idx) < total:
                return np.asarray(read_frames(p, indices=idx))
        raise ClipMissing(f"clip {name!r} (source {clip.get('source_video')!r}, path {clip.get('path')!r}) is gone: "
                          "no such video record, array or file")

    def masks(self, clip: Mapping[str, Any]) -> np.ndarray:
        """(T, H, W) int ground-truth masks of the clip's anomalous objects (0: normal pixel), from its
        video record (`tvad.data`: named like the clip, or its source video at the clip's frame
        indices), resized to the clip's recorded size. No record, or one without pixel masks:
        `ClipMissing` naming the clip (arrays and bare files carry no masks)."""

        name = str(clip.get("name", ""))
        n = int(clip.get("num_frames", 0))
        found = self.record(clip)
        if found is None:
            raise ClipMissing(f"clip {name!r}: ground-truth masks need its video record (tvad.data); "
                              f"none is known for it or its source {clip.get('source_video')!r}")
        v, pick = found
        if not getattr(v, "has_masks", True):
            raise ClipMissing(f"clip {name!r}: its video {getattr(v, 'name', '?')!r} has no pixel masks")
        m = np.asarray(v.read_masks(pick))
        if n and len(m) != n:
            raise ClipMissing(f"clip {name!r}: {len(m)} mask frames found, the corpus says {n}")
        size = clip.get("size")
        return resize_masks(m, size) if size else m


def ground_truth_heatmap(masks: np.ndarray | torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(N, H, W) masks (nonzero: anomalous) -> (T, h, w) float32 in [0, 1] on a heatmap's grid
    `shape` = (T, h, w): frames paired as the temporal patch pairs them (`pair_merge`, the AHD's
    training target for eq. 7), then each patch's fraction of anomalous pixels (area pooling)."""

    m = pair_merge(torch.as_tensor(np.asarray(masks)))
    T, h, w = (int(x) for x in shape)
    if m.shape[0] != T:
        raise ValueError(f"{len(masks)} mask frames give {m.shape[0]} temporal steps; the heatmap has {T}")
    return F.adaptive_avg_pool2d(m.float()[None], (h, w))[0]


HEAT_GRID = "max_pixels"  # ClipStore identity: the cached heat's grid (the AHD's, `clip_heatmap`), under a budget


class ClipStore:
    """Per clip, the frozen parts' outputs (the AHD heatmap and, unless `video_embeds=False`, the
    merged video tokens V), computed once with `model.encode_clip` (heat (T', h_a, w_a) at the AHD's
    resolution, tokens on the budgeted grid `grid_thw`) and cached as safetensors under
    `root` (key: clip, vision tower, AHD weights, switches, video token budget), held in memory after
    the first read. The model (`store.model`) may be swapped, but not for one of another budget.
    With `pixels=True` each `get` also carries the processor's pixel values (recomputed from the
    frames, never cached: for the 7B they are large). `pixels` defaults to `not video_embeds`: a
    store without tokens serves pixels (`stage2.video_input = "pixels"`), or the model would get
    neither; its clips never carry tokens, even ones an `embeds` store left in the same cache, and
    the cache key names the mode."""

    def __init__(self, model: TVAD, resolver: Callable[[Mapping], np.ndarray], root: str | os.PathLike | None = None,
                 video_embeds: bool = True, pixels: bool | None = None, budgets: Mapping[str, int] | None = None):
        self.model = model
        self.resolver = resolver
        self.root = Path(root) if root is not None else None
        self.video_embeds = bool(video_embeds)
        self.pixels = (not self.video_embeds) if pixels is None else bool(pixels)
        self._mem: dict[str, ClipInputs] = {}
        # {clip name: merged video tokens}: the clips whose dialogues leave less room than their full video
        # (`dialogue_budgets`); a clip not named here gets the model's budget
        self.budgets: dict[str, int] = {str(k): int(v) for k, v in (budgets or {}).items()}
        h = hashlib.sha256(vision_hash(model.qwen).encode())
        if model.ahd is not None:
            for k, v in sorted(model.ahd.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().float().cpu().numpy().tobytes())
        h.update(f"{model.use_ahd}|{model.backbone.max_pixels}|{model.layers}".encode())
        self.video_max_tokens = model.video_max_tokens
        if self.video_max_tokens is not None:  # no budget: the key of caches made before budgets existed
            h.update(f"|video_max_tokens={self.video_max_tokens}".encode())
            # the heat at the AHD's resolution, not on the budgeted token grid as in caches made before
            # (without a budget the two grids agree, so those caches stay valid under the old key)
            h.update(f"|heat={HEAT_GRID}".encode())
        if not self.video_embeds:  # the video-input mode (the `embeds` key is that of older caches)
            h.update(b"|video_input=pixels")
        self.identity = h.hexdigest()[:16]
        self.computed = 0

    def key(self, clip: Mapping) -> str:
        d = {k: clip.get(k) for k in ("name", "source_video", "frame_indices", "num_frames", "fps", "path", "size")}
        b = self.budgets.get(str(clip.get("name")))
        if b is not None:  # a clip's own budget (keys of clips without one are unchanged)
            d["budget"] = b
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def fps(self, clip: Mapping) -> float:
        return float(clip.get("fps") or self.model.fps)

    def frames(self, clip: Mapping) -> np.ndarray:
        """The clip's frames, resized to the clip's recorded size when the source differs."""
        f = np.asarray(self.resolver(clip))
        if f.ndim != 4:
            raise ClipMissing(f"clip {clip.get('name')!r}: frames of shape {f.shape}, expected (T, H, W, 3)")
        if len(f) != int(clip.get("num_frames", len(f))):
            raise ClipMissing(f"clip {clip.get('name')!r}: {len(f)} frames found, the corpus says "
                              f"{clip.get('num_frames')}")
        size = clip.get("size")
        if size and tuple(int(x) for x in size) != tuple(f.shape[1:3]):

            f = resize_frames(f, (int(size[0]), int(size[1])))
        return f

    def get(self, clip: Mapping) -> ClipInputs:
        if self.model is None:
            raise TVADError("this clip store holds no model (released so that one backbone is in memory at a "
                            "time): set store.model to a loaded model first")
        if self.model.video_max_tokens != self.video_max_tokens:
            raise TVADError(f"this clip store holds clips under video_max_tokens={self.video_max_tokens}, the model "
                            f"uses {self.model.video_max_tokens}: make a new ClipStore for it")
        k = self.key(clip)
        c = self._mem.get(k) or self._read(k)
        if c is not None and not self.video_embeds and c.video_embeds is not None:
            c = ClipInputs(**{**c.__dict__, "video_embeds": None})  # pixels mode: tokens never served
        if c is None or (self.video_embeds and c.video_embeds is None):
            c = self.model.encode_clip(self.frames(clip), self.fps(clip), max_tokens=self.budgets.get(str(clip.get("name"))))
            if not self.video_embeds:
                c.video_embeds = None
            self.computed += 1
            self._write(k, c, clip)
        self._mem[k] = c
        if self.pixels:
            inp = self.model.preprocess(self.frames(clip), self.fps(clip), max_tokens=self.budgets.get(str(clip.get("name"))))
            return ClipInputs(**{**c.__dict__, "pixel_values": inp["pixel_values_videos"]})
        if c.video_embeds is None:
            raise TVADError(f"clip {clip.get('name')!r}: this clip store serves neither merged video tokens "
                            "(video_embeds=False) nor pixel values (pixels=False)")
        return c

    def _path(self, k: str) -> Path | None:
        return None if self.root is None else self.root / self.identity / f"{k}.safetensors"

    def _read(self, k: str) -> ClipInputs | None:
        p = self._path(k)
        if p is None or not p.exists():
            return None

        try:
            t = load_file(str(p))
            m = json.loads(bytes(t.pop("meta").tolist()).decode()) if "meta" in t else {}
        except Exception:  # truncated or foreign file: recompute
            return None
        return ClipInputs(video_embeds=t.get("video_embeds"), heat=t["heat"], grid_thw=t["grid_thw"],
                          second_per_grid_ts=t["second_per_grid_ts"], num_frames=int(m.get("num_frames", 0)),
                          video_id=str(m.get("video_id", "")))

    def _write(self, k: str, c: ClipInputs, clip: Mapping) -> None:
        p = self._path(k)
        if p is None:
            return

        p.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"num_frames": c.num_frames, "video_id": c.video_id, "clip": clip.get("name")}).encode()
        t = {"heat": c.heat.contiguous(), "grid_thw": c.grid_thw.cpu().contiguous(),
             "second_per_grid_ts": c.second_per_grid_ts.cpu().contiguous(),
             "meta": torch.tensor(list(meta), dtype=torch.uint8)}
        if c.video_embeds is not None:
            t["video_embeds"] = c.video_embeds.detach().cpu().contiguous()
        with atomic_path(p) as tmp:
            save_file(t, str(tmp))


class HeatmapView:
    """A `ClipStore` whose clips carry another heatmap; everything else (video tokens, grid, the
    store's model and settings) is the store's.

    "zeros":        all-zero heatmaps (Table 4's "w/o AHD" at inference).
    "ground_truth": the clip's anomaly masks on the heatmap's grid (`ground_truth_heatmap`): an
                    oracle AHD. A model trained and evaluated on it bounds what stage 2 makes of
                    heatmaps, which separates the AHD's quality from stage 2's reading of it
                    (`stage2.oracle`; a diagnostic, not the paper's method). Needs `resolver.masks`.
    """

    SOURCES = ("zeros", "ground_truth")

    def __init__(self, store: ClipStore, source: str, resolver: ClipResolver | None = None):
        if source not in self.SOURCES:
            raise ValueError(f"heatmap source must be one of {self.SOURCES}, got {source!r}")
        if source == "ground_truth" and resolver is None:
            raise ValueError("ground-truth heatmaps need the clip resolver (for the masks)")
        self.__dict__.update(store=store, source=source, resolver=resolver, _heat={})

    def get(self, clip: Mapping) -> ClipInputs:

        c = self.store.get(clip)
        if self.source == "zeros":
            return dataclasses.replace(c, heat=torch.zeros_like(c.heat))
        k = self.store.key(clip)
        if k not in self._heat:
            self._heat[k] = ground_truth_heatmap(self.resolver.masks(clip), c.heat.shape)
        return dataclasses.replace(c, heat=self._heat[k].clone())

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def __setattr__(self, name: str, value) -> None:  # e.g. the collator's `clips.pixels = True`
        setattr(self.store, name, value)


def load_records(path: str | os.PathLike) -> list[dict]:
    """A corpus file (validated by the corpus's own schema check)."""

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: corpus file missing (notebook 01 writes the corpora into the run dir)")
    return load_corpus(p)


def check_clips(records: Sequence[dict], clips: ClipStore, progress: bool = False, desc: str = "clips") -> None:
    """Compute (or read) every record's clip now: a missing clip fails here, with the record's id."""

    for r in tqdm(list(records), desc=desc, disable=not progress):
        try:
            clips.get(r["clip"])
        except ClipMissing as e:
            raise ClipMissing(f"corpus record {r.get('id')!r}: {e}") from e


def corpus_records(run) -> dict[str, list[dict]]:
    """{"a.train", "a.val", "b.train", "b.val"}: the corpora notebook 01 wrote into the run dir."""
    d = run.dir / "corpus"
    return {f"{ph}.{sp}": load_records(d / f"phase_{ph}.{sp}.jsonl") for ph in ("a", "b") for sp in ("train", "val")}


def dialogue_budgets(model: TVAD, records: Sequence[dict], max_length: int, num_prompts: int | None = None) -> dict[str, int]:
    """{clip name: merged video tokens} for the clips whose longest dialogue would not fit
    `max_length` beside their video at the model's budget: each gets the room that dialogue leaves
    (`max_length` minus its text and its T' x num_prompts prompt block), so no training sequence is cut
    and the video shrinks instead (qwen-vl-utils' total_pixels, per clip). Clips that fit are not
    named: they keep the model's budget (`TVAD.budget`). `num_prompts`: per temporal token (default the
    model's; give the full model's so every variant sees the same video). A dialogue too long for any
    video is a `TVADError` naming it."""
    k = model.num_prompts if num_prompts is None else int(num_prompts)
    room: dict[str, int] = {}
    clips: dict[str, Mapping] = {}
    for r in records:
        c = r["clip"]
        name = str(c["name"])
        groups = -(-int(c["num_frames"]) // 2)
        enc = encode_dialogue(model.tokenizer, r["messages"], 0, groups * k, model.video_token_id)
        left = int(max_length) - int(enc.input_ids.numel())
        if left < groups:  # not even one merged token per temporal patch
            raise TVADError(f"corpus record {r.get('id')!r}: {enc.input_ids.numel()} tokens of text and prompts leave "
                            f"no room for the {int(c['num_frames'])}-frame video under max_length {max_length}")
        room[name] = min(room.get(name, left), left)
        clips[name] = c
    out = {}
    for name, left in room.items():
        c = clips[name]
        H, W = (int(x) for x in (c.get("size") or (0, 0)))
        if H and W:
            t, h, w = feature_grid(model.backbone, int(c["num_frames"]), H, W)
            full = t * h * w // 4  # merged tokens at the backbone's max_pixels (2x2 merge)
        else:
            full = None
        cap = model.budget()
        natural = full if cap is None else (cap if full is None else min(cap, full))
        if natural is None or natural > left:
            out[name] = left
    return out
