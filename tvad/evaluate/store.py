"""The prediction store: what notebook 04's model runs saved under `<run_dir>/predictions/`, read
back for the tables and figures (numpy only: no model, no GPU).

    heatmaps/<split>/gt.npz                  per video: frame labels (T,), GT tracks (M, 6), type
    heatmaps/<split>/<method>.seed<k>.npz    per video: frame scores (T,), regions (N, 6) at the
                                             binarisation threshold (all RBDC/TBDC needs)
    dialogue/<variant>.seed<k>.jsonl         per answered turn: id, turn, type, answer, references, truth
    parameters.json                          {variant: TVAD.parameter_counts()}
    examples/<video>.npz                     frames, GT masks and heatmaps of a few clips (figures)
    dialogue_example.json                    one multi-turn conversation with its clip (figures)

Known methods and variants are listed here in the tables' row order, with their row labels.

Every loader checks what it reads, so that a table never silently loses a row or a cell: a missing,
truncated or garbled file, a NaN score, a label other than 0/1, a JSONL line that is not JSON or lacks
a field, or a split with method predictions but no gt.npz (or the reverse) is an `EvalError` whose
one-line message starts with the file (and names the video or line).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tvad.config import Config
from tvad.io import atomic_path, atomic_write_json, atomic_write_text, json_default, json_lines
from tvad.metrics import regions_from_heatmaps

# Row order and labels of the tables (methods/variants not found in the predictions are left out).
HEATMAP_METHODS = {
    "framediff": "Frame differencing",
    "decoder": "Decoder-driven heatmap",
    "ahd_one_shot": "AHD (one-shot)",
    "ahd": "AHD (fine-tuned)",
}


DIALOGUE_VARIANTS = {
    "backbone_zero_shot": "Qwen2.5-VL backbone (zero-shot)",
    "backbone_one_shot": "Qwen2.5-VL backbone (one-shot)",
    "no_rae": "SFT without RAE",
    "rae": "RAE (ours)",
    "rae_oracle": "RAE, ground-truth heatmaps (oracle)",  # stage2.oracle: the upper bound, not a method
}


SPLIT_LABELS = {"val": "validation", "test_seen": "test (seen types)", "test": "test (unseen types)"}


class EvalError(ValueError):
    """Missing or inconsistent predictions (the message names the file)."""


def _pred_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "predictions"


def _safe_name(s: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", s):
        raise EvalError(f"name {s!r} must use letters, digits, '_', '-', '.' only")
    return s


@dataclass
class GroundTruth:
    """Per video of one split: frame labels, GT tracks [track, frame, x1, y1, x2, y2], type."""

    labels: dict[str, np.ndarray]
    gt_tracks: dict[str, np.ndarray]
    types: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    @property
    def num_frames(self) -> dict[str, int]:
        return {n: int(len(v)) for n, v in self.labels.items()}


def scores_and_regions(heatmaps: Mapping[str, np.ndarray], threshold: float = 0.5, frame_score: str = "max",
                       topk: int = 16) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """{video: heat (T, H, W)} -> ({video: frame scores (T,)}, {video: regions (N, 6)}): what the
    tables need of a heatmap (max over the frame, or the top-k mean; components >= threshold)."""

    scores, regions = {}, {}
    for name, h in heatmaps.items():
        h = np.asarray(h, dtype=np.float32)
        if h.ndim != 3:
            raise EvalError(f"heatmaps[{name!r}]: expected (T, H, W), got {h.shape}")
        flat = h.reshape(len(h), -1)
        if frame_score == "max":
            scores[name] = flat.max(1)
        elif frame_score == "topk":
            k = min(int(topk), flat.shape[1])
            scores[name] = np.sort(flat, axis=1)[:, -k:].mean(1)
        else:
            raise EvalError(f"frame_score must be 'max' or 'topk', got {frame_score!r}")
        regions[name] = regions_from_heatmaps(h, threshold)
    return scores, regions


def _save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


_RERUN = "rerun notebook 04_evaluation"
# What a truncated, garbled or foreign file raises somewhere inside np.load / NpzFile reads.
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, UnicodeDecodeError, zipfile.BadZipFile,
               zlib.error, NotImplementedError)


def _load_npz(path: Path, required: Sequence[str] = ()) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a store npz; a missing, truncated or garbled file, or one without the
    `required` arrays, is an EvalError naming it."""
    if not path.exists():
        raise EvalError(f"{path}: no such predictions file")
    try:
        z = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as e:
        raise EvalError(f"{path}: unreadable predictions file ({_why(e)}); {_RERUN}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise EvalError(f"{path}: not an npz archive; {_RERUN}")
    with z:
        try:
            if "__meta__" not in z.files:
                raise EvalError(f"{path}: no '__meta__' entry (not a prediction file); {_RERUN}")
            meta = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except _NPZ_ERRORS as e:
            raise EvalError(f"{path}: corrupt predictions file ({_why(e)}); {_RERUN}") from None
    if not isinstance(meta, dict):
        raise EvalError(f"{path}: corrupt predictions file ('__meta__' is not a JSON object); {_RERUN}")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise EvalError(f"{path}: corrupt predictions file (no {missing[0]!r} array); {_RERUN}")
    return meta, arrays


def _why(e: BaseException) -> str:
    """An exception as one short line."""
    msg = " ".join(str(e).split())
    msg = msg[:160] + "..." if len(msg) > 160 else msg
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _names(path: Path, meta: dict) -> list[str]:
    names = meta.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise EvalError(f"{path}: corrupt predictions file ('names' is not a list of distinct video names); {_RERUN}")
    return names


def _rows6(path: Path, name: str, what: str, a: np.ndarray) -> np.ndarray:
    """(n, 6) finite numeric rows of one video, else an EvalError naming the file and video."""
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or a.ndim != 2 or a.shape[1] != 6:
        raise EvalError(f"{path}: video {name!r}: {what} must be numeric (n, 6) rows, got {a.dtype} {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a).all(1))
    if bad.size:
        raise EvalError(f"{path}: video {name!r}: {what} row {bad[0]} is not finite ({a[bad[0]].tolist()}); "
                        f"{_RERUN}")
    return a


def _vector(path: Path, name: str, what: str, a: np.ndarray) -> np.ndarray:
    """A finite numeric (T,) array of one video, else an EvalError naming the file, video, frame."""
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or a.ndim != 1:
        raise EvalError(f"{path}: video {name!r}: {what} must be a numeric (T,) array, got {a.dtype} {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise EvalError(f"{path}: video {name!r}: {what} at frame {bad[0]} is {a[bad[0]].item()}; {_RERUN}")
    return a


def save_heatmap_gt(run_dir, split: str, labels: Mapping[str, Any], gt_tracks: Mapping[str, Any],
                    types: Mapping[str, str] | None = None) -> Path:
    """Ground truth of one split, shared by every method's predictions."""
    names = list(labels)
    if set(names) != set(gt_tracks):
        raise EvalError(f"split {split!r}: labels and gt_tracks name different videos")
    arrays = {}
    for i, n in enumerate(names):
        arrays[f"labels_{i}"] = np.asarray(labels[n]).astype(np.int8).reshape(-1)
        arrays[f"tracks_{i}"] = np.asarray(gt_tracks[n], dtype=np.float64).reshape(-1, 6)
    meta = {"split": split, "names": names, "types": {n: (types or {}).get(n, "") for n in names}}
    return _save_npz(_pred_dir(run_dir) / "heatmaps" / _safe_name(split) / "gt.npz", arrays, meta)


def _per_video(path: Path, meta: dict, a: Mapping[str, np.ndarray], kinds: tuple[str, str]):
    """(name, first array, second array) of each video of a predictions file, e.g. kinds ("scores",
    "regions") for the arrays scores_<i> and regions_<i>; an EvalError names the file if one is missing."""
    for i, n in enumerate(_names(path, meta)):
        keys = [f"{k}_{i}" for k in kinds]
        if any(k not in a for k in keys):
            raise EvalError(f"{path}: corrupt predictions file (no {kinds[0]}/{kinds[1]} of video {n!r}); {_RERUN}")
        yield n, a[keys[0]], a[keys[1]]


def gt_path(run_dir, split: str) -> Path:
    return _pred_dir(run_dir) / "heatmaps" / split / "gt.npz"


def heatmap_path(run_dir, split: str, method: str, seed: int) -> Path:
    return _pred_dir(run_dir) / "heatmaps" / split / f"{method}.seed{int(seed)}.npz"


def load_heatmap_gt(run_dir, split: str) -> GroundTruth:
    """The split's ground truth, checked: labels 0/1, tracks finite (n, 6) rows (an EvalError names
    the file and video otherwise)."""
    path = gt_path(run_dir, split)
    meta, a = _load_npz(path)
    labels, tracks = {}, {}
    for n, y, t in _per_video(path, meta, a, ("labels", "tracks")):
        y = _vector(path, n, "frame labels", y)
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            raise EvalError(f"{path}: video {n!r}: frame label at frame {bad[0]} is {y[bad[0]].item()}, not 0 or 1")
        labels[n] = y
        tracks[n] = _rows6(path, n, "GT track", t)
    types = meta.get("types") or {}
    if not isinstance(types, dict):
        raise EvalError(f"{path}: corrupt predictions file ('types' is not a JSON object); {_RERUN}")
    return GroundTruth(labels, tracks, dict(types))


def save_heatmap_predictions(run_dir, split: str, method: str, scores: Mapping[str, Any],
                             regions: Mapping[str, Any], seed: int = 0, meta: dict | None = None) -> Path:
    """One method's frame scores and regions on one split (one seed)."""
    names = list(scores)
    if set(names) != set(regions):
        raise EvalError(f"{method} on {split}: scores and regions name different videos")
    arrays = {}
    for i, n in enumerate(names):
        s = np.asarray(scores[n], dtype=np.float32).reshape(-1)
        if not np.isfinite(s).all():
            raise EvalError(f"{method} on {split}, video {n!r}: non-finite frame scores")
        arrays[f"scores_{i}"] = s
        arrays[f"regions_{i}"] = np.asarray(regions[n], dtype=np.float64).reshape(-1, 6)
    m = {"split": split, "method": method, "seed": int(seed), "names": names, **(meta or {})}
    path = _pred_dir(run_dir) / "heatmaps" / _safe_name(split) / f"{_safe_name(method)}.seed{int(seed)}.npz"
    return _save_npz(path, arrays, m)


def load_heatmap_predictions(run_dir, split: str, method: str) -> dict[int, tuple[dict, dict]]:
    """{seed: ({video: scores}, {video: regions})} of one method on one split; frame scores must be
    finite and regions finite (n, 6) rows (an EvalError names the file and video otherwise)."""
    d = _pred_dir(run_dir) / "heatmaps" / split
    out = {}
    for p in sorted(d.glob(f"{method}.seed*.npz")):
        m = re.fullmatch(re.escape(method) + r"\.seed(\d+)\.npz", p.name)
        if not m:
            continue
        meta, a = _load_npz(p)
        scores, regions = {}, {}
        for n, s, r in _per_video(p, meta, a, ("scores", "regions")):
            scores[n] = _vector(p, n, "frame score", s)
            regions[n] = _rows6(p, n, "region", r)
        out[int(m.group(1))] = (scores, regions)
    return out


def heatmap_splits(run_dir) -> list[str]:
    """Splits with saved ground truth, in the order val, test_seen, test, then the others. A split
    with method predictions but no gt.npz, or gt.npz but no method predictions, is an EvalError
    naming the missing file (a split never drops out of the tables silently)."""
    d = _pred_dir(run_dir) / "heatmaps"
    have = []
    for sd in sorted(d.iterdir()) if d.is_dir() else []:
        if not sd.is_dir():
            continue
        gt, methods = sd / "gt.npz", _methods_in(sd)
        if methods and not gt.exists():
            raise EvalError(f"{gt}: no such file, but split {sd.name!r} has predictions of {', '.join(methods)} "
                            f"(its ground truth is missing; {_RERUN})")
        if gt.exists() and not methods:
            raise EvalError(f"{sd / '<method>.seed<k>.npz'}: no such file, but split {sd.name!r} has gt.npz "
                            f"(its method predictions are missing; {_RERUN})")
        if gt.exists():
            have.append(sd.name)
    order = [s for s in SPLIT_LABELS if s in have]
    return order + [s for s in have if s not in order]


def _methods_in(d: Path) -> list[str]:
    """Methods with at least one `<method>.seed<k>.npz` in a split folder, sorted."""
    return sorted({m.group(1) for p in d.glob("*.seed*.npz")
                   if (m := re.fullmatch(r"(.+)\.seed\d+\.npz", p.name)) and not p.name.startswith(".")})


def heatmap_methods(run_dir, split: str) -> list[str]:
    d = _pred_dir(run_dir) / "heatmaps" / split
    have = _methods_in(d) if d.is_dir() else []
    return [m for m in HEATMAP_METHODS if m in have] + [m for m in have if m not in HEATMAP_METHODS]


def save_dialogue_predictions(run_dir, variant: str, preds: Sequence[dict], seed: int = 0) -> Path:
    """`preds` as `tvad.train.stage2.evaluate_dialogues` returns them (one dict per answered turn)."""

    for i, p in enumerate(preds):
        for k in ("id", "turn", "type", "answer"):
            if k not in p:
                raise EvalError(f"{variant}: prediction {i} has no {k!r}")
    text = "".join(json.dumps(p, sort_keys=True, default=json_default) + "\n" for p in preds)
    return atomic_write_text(_pred_dir(run_dir) / "dialogue" / f"{_safe_name(variant)}.seed{int(seed)}.jsonl", text)




def dialogue_path(run_dir, variant: str, seed: int) -> Path:
    return _pred_dir(run_dir) / "dialogue" / f"{variant}.seed{int(seed)}.jsonl"


# What each answered turn needs, beyond id, turn, type and a string answer.
_TURN_NEEDS = {"yes_no": "truth", "target": "references", "trajectory": "references"}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EvalError(f"{path}: unreadable ({_why(e)})") from None


def _read_json(path: Path, what: str = "file"):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise EvalError(f"{path}: not a JSON {what} (line {e.lineno}: {e.msg})") from None


def _dialogue_lines(path: Path) -> list[dict]:
    """The answered turns of one dialogue prediction file, each checked (an EvalError names the
    file and line)."""
    out = []
    not_json = lambda i, e: EvalError(f"{path}, line {i}: not JSON ({e.msg} at column {e.colno}); {_RERUN}")  # noqa: E731
    for i, p in json_lines(_read_text(path), not_json):
        if not isinstance(p, dict):
            raise EvalError(f"{path}, line {i}: expected a JSON object, got {type(p).__name__}; {_RERUN}")
        need = ["id", "turn", "type", "answer"] + ([_TURN_NEEDS[p["type"]]] if p.get("type") in _TURN_NEEDS else [])
        missing = [k for k in need if k not in p]
        if missing:
            raise EvalError(f"{path}, line {i}: no {missing[0]!r} field; {_RERUN}")
        if not isinstance(p["answer"], str):
            raise EvalError(f"{path}, line {i}: 'answer' must be a string, got {type(p['answer']).__name__}")
        if "references" in need and (not isinstance(p["references"], list) or not p["references"]
                                     or not all(isinstance(r, str) for r in p["references"])):
            raise EvalError(f"{path}, line {i}: 'references' must be a non-empty list of strings")
        out.append(p)
    return out


def load_dialogue_predictions(run_dir, variant: str) -> dict[int, list[dict]]:
    """{seed: [answered turn, ...]} of one dialogue variant; a line that is not JSON or lacks a
    field the metrics need is an EvalError naming the file and line."""
    d = _pred_dir(run_dir) / "dialogue"
    out = {}
    for p in sorted(d.glob(f"{variant}.seed*.jsonl")):
        m = re.fullmatch(re.escape(variant) + r"\.seed(\d+)\.jsonl", p.name)
        if m:
            out[int(m.group(1))] = _dialogue_lines(p)
    return out


def _source(paths) -> str | None:
    """A fingerprint of the checkpoint directories / files a prediction was made from: the names,
    sizes and modification times of their files (a retrained checkpoint rewrites them), or None if
    one is missing. Cheap for the 7B: no weight bytes are read."""

    h = hashlib.sha1()
    for p in paths:
        if p is None or not Path(p).exists():
            return None
        p = Path(p)
        for f in sorted([p] if p.is_file() else (x for x in p.rglob("*") if x.is_file())):
            st = f.stat()
            h.update(f"{f.relative_to(p.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _source_path(run_dir, variant: str, seed: int) -> Path:
    return _pred_dir(run_dir) / "dialogue" / f"{_safe_name(variant)}.seed{int(seed)}.source"


def _read_source(run_dir, variant: str, seed: int) -> str | None:
    p = _source_path(run_dir, variant, seed)
    return p.read_text().strip() or None if p.exists() else None


def dialogue_variants(run_dir) -> list[str]:
    d = _pred_dir(run_dir) / "dialogue"
    have = sorted({re.sub(r"\.seed\d+$", "", p.stem) for p in d.glob("*.seed*.jsonl")}) if d.is_dir() else []
    return [v for v in DIALOGUE_VARIANTS if v in have] + [v for v in have if v not in DIALOGUE_VARIANTS]


def save_parameter_counts(run_dir, counts: Mapping[str, Mapping[str, int]]) -> Path:
    """{variant: parameter_counts()} with variants full, no_ahd, no_rae, backbone (Table 4)."""

    return atomic_write_json(_pred_dir(run_dir) / "parameters.json", {k: dict(v) for k, v in counts.items()})


def load_parameter_counts(run_dir) -> dict[str, dict[str, int]]:
    p = _pred_dir(run_dir) / "parameters.json"
    if not p.exists():
        return {}
    counts = _read_json(p)
    if not isinstance(counts, dict) or not all(
            isinstance(v, dict) and all(isinstance(n, int) and not isinstance(n, bool) for n in v.values())
            for v in counts.values()):
        raise EvalError(f"{p}: expected {{variant: {{part: integer count}}}}; {_RERUN}")
    return counts


def save_example(run_dir, name: str, frames: np.ndarray, masks: np.ndarray | None,
                 heatmaps: Mapping[str, np.ndarray], gt_tracks: np.ndarray | None = None,
                 meta: dict | None = None) -> Path:
    """A clip for the figures: frames uint8 (T, H, W, 3), GT masks (T, H, W), heatmaps {method:
    (T, H, W)} stored as float16, GT tracks (M, 6)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise EvalError(f"example {name!r}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    arrays = {"frames": frames}
    if masks is not None:
        arrays["masks"] = np.asarray(masks).astype(np.uint8)
    for k, h in heatmaps.items():
        h = np.asarray(h, np.float32)
        if h.shape != frames.shape[:3]:
            raise EvalError(f"example {name!r}: heatmap {k!r} is {h.shape}, frames are {frames.shape[:3]}")
        arrays[f"heat_{_safe_name(k)}"] = h.astype(np.float16)
    if gt_tracks is not None:
        arrays["gt_tracks"] = np.asarray(gt_tracks, np.float64).reshape(-1, 6)
    return _save_npz(_pred_dir(run_dir) / "examples" / f"{_safe_name(name)}.npz", arrays,
                     {"name": name, **(meta or {})})


def load_examples(run_dir) -> list[dict]:
    """[{"name", "frames", "masks", "heatmaps": {method: (T, H, W) float32}, "gt_tracks", meta...}]"""
    out = []
    for p in sorted((_pred_dir(run_dir) / "examples").glob("*.npz")):
        if p.name.startswith("."):  # an atomic write's temporary file
            continue
        meta, a = _load_npz(p, required=["frames"])
        frames = a["frames"]
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise EvalError(f"{p}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}; {_RERUN}")
        heat = {k[5:]: a[k].astype(np.float32) for k in a if k.startswith("heat_")}
        for k, h in heat.items():
            if h.shape != frames.shape[:3] or not np.isfinite(h).all() or h.min(initial=0) < 0 or \
                    h.max(initial=0) > 1.001:
                raise EvalError(f"{p}: heatmap {k!r} is not finite heat in [0, 1] of the frames' shape "
                                f"{frames.shape[:3]}; {_RERUN}")
        out.append({**meta, "frames": frames, "masks": a.get("masks"), "gt_tracks": a.get("gt_tracks"),
                    "heatmaps": heat})
    return out


def _cfg(run_dir, cfg):
    if cfg is not None:
        return cfg

    p = Path(run_dir) / "config.yaml"
    return Config.from_yaml(p) if p.exists() else Config()


def load_dialogue_example(run_dir) -> dict | None:
    """predictions/dialogue_example.{json,npz}: {"id", "turns", "frames", "heat", "messages",
    "examples": [{"id", "role", "rule", "reason", "turns", "frames", "heat", "messages"}]} (an older
    file's single dialogue: one example of role "example"); None without the file."""
    p = _pred_dir(run_dir) / "dialogue_example.json"
    if not p.exists():
        return None
    ex = _read_json(p)
    good = lambda e: isinstance(e, dict) and "id" in e and isinstance(e.get("turns"), list) and all(  # noqa: E731
        isinstance(t, dict) and "question" in t and "answer" in t for t in e["turns"])
    many = ex.get("examples", [ex]) if isinstance(ex, dict) else None
    if not good(ex) or not isinstance(many, list) or not many or not all(good(e) for e in many):
        raise EvalError(f"{p}: expected {{'id', 'turns': [{{'question', 'answer'}}, ...], 'examples': [...]}}; "
                        f"{_RERUN}")
    names = [x for k in range(len(many)) for x in (("frames", "heat") if k == 0 else (f"frames_{k}", f"heat_{k}"))]
    _, a = _load_npz(_pred_dir(run_dir) / "dialogue_example.npz", required=names)

    def messages(turns):
        msgs = []
        for t in turns:
            msgs += [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": t["answer"]}]
        return msgs

    examples = []
    for k, e in enumerate(many):
        sfx = "" if k == 0 else f"_{k}"
        examples.append({"role": "example", "rule": "", "reason": "", **e, "frames": a[f"frames{sfx}"],
                         "heat": a[f"heat{sfx}"].astype(np.float32), "messages": messages(e["turns"])})
    first = examples[0]
    return {**ex, "frames": first["frames"], "heat": first["heat"], "messages": first["messages"],
            "examples": examples}


def training_histories(run_dir) -> tuple[dict | None, dict[str, dict]]:
    """(stage1/history.json, {"<variant> phase A": {"log": [...]}, ...}) of a run directory."""
    d = Path(run_dir)
    s1 = d / "stage1" / "history.json"
    stage1 = _read_json(s1) if s1.exists() else None
    stage2 = {}
    for p in sorted(d.glob("stage2/*/phase_*/history.json")):
        variant, phase = p.parent.parent.name, p.parent.name.split("_")[-1].upper()
        stage2[f"{variant} phase {phase}"] = _read_json(p)
    return stage1, stage2
