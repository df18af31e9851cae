"""Evaluation: saved predictions -> the paper's tables 2, 3 and 4 (JSON, CSV, Markdown, LaTeX).

Notebook 04 runs the models once and saves what they predicted; every number in the tables is
recomputed from those files by `build_tables` (also `tvad eval --run-dir DIR`), so a table can be
re-derived, audited or extended without a model or a GPU. Layout under `<run_dir>/predictions/`:

    heatmaps/<split>/gt.npz                  per video: frame labels (T,), GT tracks (M, 6), type
    heatmaps/<split>/<method>.seed<k>.npz    per video: frame scores (T,), regions (N, 6) at the
                                             binarisation threshold (all RBDC/TBDC needs)
    dialogue/<variant>.seed<k>.jsonl         per answered turn: id, turn, type, answer, references, truth
    parameters.json                          {variant: TVAD.parameter_counts()}
    examples/<video>.npz                     frames, GT masks and heatmaps of a few clips (figures)
    dialogue_example.json                    one multi-turn conversation with its clip (figures)

Tables go to `<run_dir>/tables/table{2,3,4}.{json,csv,md,tex}`; flat result keys to
`results/04_evaluation.json` (e.g. `table2.test.ahd.micro_auc.mean`). Metrics are stored as
fractions (BLEU-4 as 0-100) and printed as percentages, mean ± std over seeds (std with n - 1,
shown only with two seeds or more).

    from tvad import evaluate as ev
    ev.save_heatmap_gt(run_dir, "test", labels, gt_tracks, types)
    ev.save_heatmap_predictions(run_dir, "test", "ahd", *ev.scores_and_regions(heat), seed=0)
    ev.save_dialogue_predictions(run_dir, "rae", preds)
    tables = ev.build_tables(run_dir)          # {"table2": Table, "table3": ..., "table4": ...}
    ev.write_tables(run_dir, tables)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "HEATMAP_METHODS", "DIALOGUE_VARIANTS", "ABLATIONS", "PAPER",
    "EvalError", "GroundTruth", "Table",
    "scores_and_regions", "save_heatmap_gt", "load_heatmap_gt", "save_heatmap_predictions",
    "load_heatmap_predictions", "heatmap_methods", "heatmap_splits", "heatmap_metrics",
    "save_dialogue_predictions", "load_dialogue_predictions", "dialogue_variants", "dialogue_metrics",
    "save_parameter_counts", "load_parameter_counts", "save_example", "load_examples",
    "roc_curve", "detection_curves",
    "table2", "table3", "table4", "build_tables", "write_tables", "table_results", "main_eval",
]

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
# Table 4: variant -> (parameter-count key, heatmap method or None, dialogue variant or None)
ABLATIONS = {
    "T-VAD w/o AHD": ("no_ahd", None, "no_ahd"),
    "T-VAD w/o RAE": ("no_rae", "ahd", "no_rae"),
    "T-VAD w/o AHD & RAE": ("backbone", None, "backbone_zero_shot"),
    "T-VAD": ("full", "ahd", "rae"),
}
TABLE4_ONLY = {"no_ahd"}  # dialogue variants shown in the ablation only
SPLIT_LABELS = {"val": "validation", "test_seen": "test (seen types)", "test": "test (unseen types)"}

# The paper's numbers (UBnormal validation for Table 2; ShanghaiTech / UBnormal for Table 3; Table 4),
# fractions like ours; printed beside ours in the README.
PAPER = {
    "table2": {"ahd_one_shot": {"micro_auc": .945, "macro_auc": .852, "rbdc": .643, "tbdc": .744},
               "ahd": {"micro_auc": .948, "macro_auc": .878, "rbdc": .678, "tbdc": .767}},
    "table3": {"backbone_zero_shot": {"shanghaitech": (18.74, 27.33, .6103), "ubnormal": (16.20, 24.18, .6562)},
               "backbone_one_shot": {"shanghaitech": (50.42, 78.91, .9236), "ubnormal": (44.35, 70.82, .8724)},
               "rae": {"shanghaitech": (62.67, 88.84, .9767), "ubnormal": (50.32, 78.10, .8973)}},
    "table4": {"T-VAD w/o AHD": (8299.71e6, None, None, 61.82, 85.47, .9538),
               "T-VAD w/o RAE": (8317.13e6, .678, .767, None, None, None),
               "T-VAD w/o AHD & RAE": (8274.74e6, None, None, 61.82, 85.47, .9538),
               "T-VAD": (8324.67e6, .678, .767, 62.67, 88.84, .9767)},
}


class EvalError(ValueError):
    """Missing or inconsistent predictions (the message names the file)."""


def _pred_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "predictions"


def _safe_name(s: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", s):
        raise EvalError(f"name {s!r} must use letters, digits, '_', '-', '.' only")
    return s


# -- heatmap predictions --------------------------------------------------------------------------

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
    from tvad.metrics import regions_from_heatmaps

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    os.replace(tmp, path)
    return path


def _load_npz(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not path.exists():
        raise EvalError(f"{path}: no such predictions file")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["__meta__"]).decode())
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    return meta, arrays


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


def load_heatmap_gt(run_dir, split: str) -> GroundTruth:
    meta, a = _load_npz(_pred_dir(run_dir) / "heatmaps" / split / "gt.npz")
    names = meta["names"]
    return GroundTruth({n: a[f"labels_{i}"] for i, n in enumerate(names)},
                       {n: a[f"tracks_{i}"] for i, n in enumerate(names)}, dict(meta.get("types") or {}))


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
    """{seed: ({video: scores}, {video: regions})} of one method on one split."""
    d = _pred_dir(run_dir) / "heatmaps" / split
    out = {}
    for p in sorted(d.glob(f"{method}.seed*.npz")):
        m = re.fullmatch(re.escape(method) + r"\.seed(\d+)\.npz", p.name)
        if not m:
            continue
        meta, a = _load_npz(p)
        names = meta["names"]
        out[int(m.group(1))] = ({n: a[f"scores_{i}"] for i, n in enumerate(names)},
                                {n: a[f"regions_{i}"] for i, n in enumerate(names)})
    return out


def heatmap_splits(run_dir) -> list[str]:
    """Splits with saved ground truth, in the order val, test_seen, test, then the others."""
    d = _pred_dir(run_dir) / "heatmaps"
    have = sorted(p.parent.name for p in d.glob("*/gt.npz")) if d.is_dir() else []
    order = [s for s in SPLIT_LABELS if s in have]
    return order + [s for s in have if s not in order]


def heatmap_methods(run_dir, split: str) -> list[str]:
    d = _pred_dir(run_dir) / "heatmaps" / split
    have = sorted({re.sub(r"\.seed\d+$", "", p.stem) for p in d.glob("*.seed*.npz")}) if d.is_dir() else []
    return [m for m in HEATMAP_METHODS if m in have] + [m for m in have if m not in HEATMAP_METHODS]


def heatmap_metrics(scores: Mapping[str, Any], regions: Mapping[str, Any], gt: GroundTruth,
                    eval_cfg=None) -> dict[str, float]:
    """micro/macro frame AUC and RBDC/TBDC (NaN where undefined, e.g. no anomalous frame)."""
    from tvad.metrics import macro_auc, micro_auc, rbdc_tbdc

    missing = [n for n in gt.names if n not in scores]
    if missing:
        raise EvalError(f"predictions lack {len(missing)} video(s) of the ground truth, e.g. {missing[0]!r}")
    for n in gt.names:
        if len(scores[n]) != len(gt.labels[n]):
            raise EvalError(f"video {n!r}: {len(scores[n])} frame scores for {len(gt.labels[n])} labelled frames")
    sigma = getattr(eval_cfg, "sigma", None)
    s = {n: scores[n] for n in gt.names}
    out = {"micro_auc": _nan_on_error(lambda: micro_auc(s, gt.labels, sigma=sigma)),
           "macro_auc": _nan_on_error(lambda: macro_auc(s, gt.labels, sigma=sigma))}
    kw = dict(iou=getattr(eval_cfg, "iou", 0.1), hit_ratio=getattr(eval_cfg, "hit_ratio", 0.1),
              max_fpr=getattr(eval_cfg, "max_fpr", 1.0))
    rb = _nan_on_error(lambda: rbdc_tbdc({n: regions[n] for n in gt.names}, gt.gt_tracks, gt.num_frames, **kw),
                       (math.nan, math.nan))
    out["rbdc"], out["tbdc"] = float(rb[0]), float(rb[1])
    return out


def _nan_on_error(fn, default=math.nan):
    try:
        return fn()
    except ValueError:
        return default


def roc_curve(scores: Mapping[str, Any], gt: GroundTruth) -> tuple[np.ndarray, np.ndarray, float]:
    """Pooled (micro) ROC: (fpr, tpr, auc) over all frames of the split."""
    from sklearn.metrics import roc_auc_score, roc_curve as _roc

    s = np.concatenate([np.asarray(scores[n], float) for n in gt.names])
    y = np.concatenate([gt.labels[n] for n in gt.names])
    if y.min() == y.max():
        raise EvalError("ROC needs both normal and anomalous frames")
    fpr, tpr, _ = _roc(y, s)
    return fpr, tpr, float(roc_auc_score(y, s))


def detection_curves(regions: Mapping[str, Any], gt: GroundTruth, eval_cfg=None, points: int = 2000
                     ) -> dict[str, np.ndarray]:
    """RBDR and TBDR against false positives per frame as the threshold falls one detection at a
    time, in the exact rank order `tvad.metrics.rbdc_tbdc` integrates (ties in input order), from
    (0, 0): {"fpr", "rbdr", "tbdr"}, thinned to at most `points` points (every change kept when
    fewer)."""
    from tvad.metrics.regions import _counts, _pool  # the ranks rbdc_tbdc uses; same numbers as the tables

    p = _pool({n: np.asarray(regions[n], float).reshape(-1, 6) for n in gt.names}, gt.gt_tracks, gt.num_frames)
    fp, tp, td = _counts(p, getattr(eval_cfg, "iou", 0.1), getattr(eval_cfg, "hit_ratio", 0.1), "vectorized")
    fpr = np.concatenate(([0.0], fp / p.num_frames))
    rbdr = np.concatenate(([0.0], tp / len(p.gt_key)))
    tbdr = np.concatenate(([0.0], td / len(p.track_frames)))
    if len(fpr) > points:  # keep the first and last point and every point where something changes
        keep = np.ones(len(fpr), bool)
        keep[1:-1] = (np.diff(fpr)[:-1] != 0) | (np.diff(rbdr)[:-1] != 0) | (np.diff(tbdr)[:-1] != 0) | \
            (np.diff(fpr)[1:] != 0) | (np.diff(rbdr)[1:] != 0) | (np.diff(tbdr)[1:] != 0)
        idx = np.flatnonzero(keep)
        if len(idx) > points:
            idx = np.unique(np.concatenate([idx[np.linspace(0, len(idx) - 1, points).round().astype(int)]]))
        fpr, rbdr, tbdr = fpr[idx], rbdr[idx], tbdr[idx]
    return {"fpr": fpr, "rbdr": rbdr, "tbdr": tbdr}


# -- dialogue predictions -------------------------------------------------------------------------

def save_dialogue_predictions(run_dir, variant: str, preds: Sequence[dict], seed: int = 0) -> Path:
    """`preds` as `tvad.train.stage2.evaluate_dialogues` returns them (one dict per answered turn)."""
    from tvad.io import atomic_write_text

    for i, p in enumerate(preds):
        for k in ("id", "turn", "type", "answer"):
            if k not in p:
                raise EvalError(f"{variant}: prediction {i} has no {k!r}")
    text = "".join(json.dumps(p, sort_keys=True, default=_json_default) + "\n" for p in preds)
    return atomic_write_text(_pred_dir(run_dir) / "dialogue" / f"{_safe_name(variant)}.seed{int(seed)}.jsonl", text)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def load_dialogue_predictions(run_dir, variant: str) -> dict[int, list[dict]]:
    d = _pred_dir(run_dir) / "dialogue"
    out = {}
    for p in sorted(d.glob(f"{variant}.seed*.jsonl")):
        m = re.fullmatch(re.escape(variant) + r"\.seed(\d+)\.jsonl", p.name)
        if m:
            out[int(m.group(1))] = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


def _source(paths) -> str | None:
    """A fingerprint of the checkpoint directories / files a prediction was made from: the names,
    sizes and modification times of their files (a retrained checkpoint rewrites them), or None if
    one is missing. Cheap for the 7B: no weight bytes are read."""
    import hashlib

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


def dialogue_metrics(preds: Sequence[dict]) -> dict[str, float]:
    """Yes/No accuracy and balanced accuracy, Target and Trajectory BLEU-4 (best reference, macro
    over answers) of answered turns; `tvad.train.stage2.evaluate_dialogues` reports these too."""
    from tvad.metrics import bleu4, yes_no_accuracy

    m: dict[str, float] = {}
    key = lambda p: f"{p['id']}#{p['turn']}"  # noqa: E731
    yn = [p for p in preds if p["type"] == "yes_no"]
    if yn:
        acc = yes_no_accuracy({key(p): p["answer"] for p in yn}, {key(p): p["truth"] for p in yn})
        m["yes_no_accuracy"] = float(acc["accuracy"])
        m["yes_no_balanced_accuracy"] = float(acc["balanced_accuracy"])
        m["yes_no_unparsed"] = int(acc["unparsed"])
        m["yes_no_n"] = int(acc["n"])
    for typ, k in (("target", "bleu4_target"), ("trajectory", "bleu4_trajectory")):
        ps = [p for p in preds if p["type"] == typ]
        m[k] = float(bleu4({key(p): p["answer"] for p in ps}, {key(p): p["references"] for p in ps})) if ps \
            else math.nan
        m[f"{k}_n"] = len(ps)
    return m


# -- parameter counts and figure examples -----------------------------------------------------------

def save_parameter_counts(run_dir, counts: Mapping[str, Mapping[str, int]]) -> Path:
    """{variant: parameter_counts()} with variants full, no_ahd, no_rae, backbone (Table 4)."""
    from tvad.io import atomic_write_json

    return atomic_write_json(_pred_dir(run_dir) / "parameters.json", {k: dict(v) for k, v in counts.items()})


def load_parameter_counts(run_dir) -> dict[str, dict[str, int]]:
    p = _pred_dir(run_dir) / "parameters.json"
    return json.loads(p.read_text()) if p.exists() else {}


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
        meta, a = _load_npz(p)
        out.append({**meta, "frames": a["frames"], "masks": a.get("masks"), "gt_tracks": a.get("gt_tracks"),
                    "heatmaps": {k[5:]: a[k].astype(np.float32) for k in a if k.startswith("heat_")}})
    return out


# -- tables ---------------------------------------------------------------------------------------

@dataclass
class Cell:
    values: list[float]  # one per seed (NaN-free)
    scale: float = 100.0  # printed value = value * scale
    digits: int = 1

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    def text(self, pm: str = " ± ") -> str:
        if not self.values:
            return "–"
        s = f"{self.mean * self.scale:.{self.digits}f}"
        if self.std is not None:
            s += f"{pm}{self.std * self.scale:.{self.digits}f}"
        return s

    def to_json(self) -> dict:
        return {"mean": self.mean if self.values else None, "std": self.std, "n": len(self.values),
                "values": list(self.values)}


def _cell(values: Iterable[float], scale: float = 100.0, digits: int = 1) -> Cell:
    return Cell([float(v) for v in values if v is not None and np.isfinite(v)], scale, digits)


@dataclass
class Table:
    """A results table: `columns` [(key, header)], `rows` [{key: str | Cell}], a caption."""

    name: str
    caption: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def _text(self, row: dict, key: str, pm: str = " ± ") -> str:
        v = row.get(key, "")
        return v.text(pm) if isinstance(v, Cell) else str(v)

    def to_markdown(self) -> str:
        head = "| " + " | ".join(h for _, h in self.columns) + " |"
        rule = "|" + "|".join("---" if i < self._n_label_cols() else "---:" for i in range(len(self.columns))) + "|"
        body = ["| " + " | ".join(self._text(r, k) for k, _ in self.columns) + " |" for r in self.rows]
        notes = [""] + [f"_{n}_" for n in self.notes] if self.notes else []
        return "\n".join([f"**{self.caption}**", "", head, rule, *body, *notes]) + "\n"

    def _n_label_cols(self) -> int:
        n = 0
        for k, _ in self.columns:
            if self.rows and isinstance(self.rows[0].get(k), Cell):
                break
            n += 1
        return n

    def to_latex(self) -> str:
        esc = lambda s: (s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")  # noqa: E731
                         .replace("_", r"\_").replace("#", r"\#").replace("±", r"$\pm$").replace("–", "--"))
        nl = self._n_label_cols()
        spec = "l" * nl + "r" * (len(self.columns) - nl)
        lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{esc(self.caption)}}}",
                 rf"\label{{tab:{self.name}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                 " & ".join(esc(h) for _, h in self.columns) + r" \\", r"\midrule"]
        for r in self.rows:
            lines.append(" & ".join(esc(self._text(r, k)) for k, _ in self.columns) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [rf"\par\footnotesize {esc(n)}" for n in self.notes]
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """One line per row; each metric as `<key>_mean`, `<key>_std`, `<key>_n` (raw fractions)."""
        buf = io.StringIO()
        cols = []
        for k, _ in self.columns:
            if any(isinstance(r.get(k), Cell) for r in self.rows):
                cols += [f"{k}_mean", f"{k}_std", f"{k}_n"]
            else:
                cols.append(k)
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            line = {}
            for k, _ in self.columns:
                v = r.get(k, "")
                if isinstance(v, Cell):
                    j = v.to_json()
                    line.update({f"{k}_mean": j["mean"], f"{k}_std": j["std"], f"{k}_n": j["n"]})
                elif f"{k}_mean" in cols:
                    line.update({f"{k}_mean": None, f"{k}_std": None, f"{k}_n": 0})
                else:
                    line[k] = v
            w.writerow(line)
        return buf.getvalue()

    def to_json(self) -> dict:
        return {"name": self.name, "caption": self.caption, "columns": [list(c) for c in self.columns],
                "notes": self.notes,
                "rows": [{k: (v.to_json() if isinstance(v, Cell) else v) for k, v in r.items()} for r in self.rows]}


def _cfg(run_dir, cfg):
    if cfg is not None:
        return cfg
    from tvad.config import Config

    p = Path(run_dir) / "config.yaml"
    return Config.from_yaml(p) if p.exists() else Config()


def table2(run_dir, cfg=None) -> Table:
    """AHD (one-shot, fine-tuned) against frame differencing and decoder-driven heatmaps, per split."""
    cfg = _cfg(run_dir, cfg)
    rows = []
    for split in heatmap_splits(run_dir):
        gt = load_heatmap_gt(run_dir, split)
        first = True
        for method in heatmap_methods(run_dir, split):
            per_seed = [heatmap_metrics(s, r, gt, cfg.eval) for s, r in load_heatmap_predictions(run_dir, split,
                                                                                               method).values()]
            row = {"split": SPLIT_LABELS.get(split, split) if first else "", "split_key": split, "method_key": method,
                   "method": HEATMAP_METHODS.get(method, method)}
            for k in ("micro_auc", "macro_auc", "rbdc", "tbdc"):
                row[k] = _cell(m[k] for m in per_seed)
            rows.append(row)
            first = False
    n_seeds = max((len(r["micro_auc"].values) for r in rows), default=0)
    return Table("table2", "Table 2 analogue: frame-level AUC and RBDC/TBDC of the heatmaps (%)",
                 [("split", "Split"), ("method", "Method"), ("micro_auc", "Micro AUC"), ("macro_auc", "Macro AUC"),
                  ("rbdc", "RBDC"), ("tbdc", "TBDC")], rows,
                 [f"binarisation {cfg.eval.threshold}, region IoU {cfg.eval.iou}, track hit ratio "
                  f"{cfg.eval.hit_ratio}, FPR in [0, {cfg.eval.max_fpr}]; mean ± std over {n_seeds} seed(s) "
                  "(std shown with 2 or more)"])


def table3(run_dir, cfg=None) -> Table:
    """Target / Trajectory BLEU-4 and Yes/No (balanced) accuracy of each dialogue variant."""
    rows = []
    for v in [v for v in dialogue_variants(run_dir) if v not in TABLE4_ONLY]:
        per_seed = [dialogue_metrics(p) for p in load_dialogue_predictions(run_dir, v).values()]
        rows.append({"variant_key": v, "method": DIALOGUE_VARIANTS.get(v, v),
                     "bleu4_target": _cell((m["bleu4_target"] for m in per_seed), 1.0, 2),
                     "bleu4_trajectory": _cell((m["bleu4_trajectory"] for m in per_seed), 1.0, 2),
                     "yes_no_accuracy": _cell(m.get("yes_no_accuracy", math.nan) for m in per_seed),
                     "yes_no_balanced_accuracy": _cell(m.get("yes_no_balanced_accuracy", math.nan) for m in per_seed)})
    return Table("table3", "Table 3 analogue: dialogue answers on held-out clips (BLEU-4, accuracy %)",
                 [("method", "Method"), ("bleu4_target", "Target BLEU-4"), ("bleu4_trajectory", "Trajectory BLEU-4"),
                  ("yes_no_accuracy", "Yes/No acc."), ("yes_no_balanced_accuracy", "Yes/No bal. acc.")], rows,
                 ["BLEU-4: sacrebleu sentence BLEU against the best reference, macro over answers; Yes/No "
                  "from the answer's leading word (unparsed answers count as wrong)"])


def table4(run_dir, cfg=None, split: str | None = None) -> Table:
    """The ablation: full, without AHD, without RAE, without both, with parameter counts."""
    counts = load_parameter_counts(run_dir)
    splits = heatmap_splits(run_dir)
    split = split or ("test" if "test" in splits else (splits[-1] if splits else None))
    cfg = _cfg(run_dir, cfg)
    heat = {}
    if split:
        gt = load_heatmap_gt(run_dir, split)
        for m in {m for _, m, _ in ABLATIONS.values() if m}:
            preds = load_heatmap_predictions(run_dir, split, m)
            heat[m] = [heatmap_metrics(s, r, gt, cfg.eval) for s, r in preds.values()]
    rows = []
    for label, (pkey, hm, dv) in ABLATIONS.items():
        n = (counts.get(pkey) or {}).get("total")
        row = {"method": label, "parameters": f"{n / 1e6:.2f}M" if n else "–"}
        for k in ("rbdc", "tbdc"):
            row[k] = _cell(m[k] for m in heat.get(hm, [])) if hm else _cell([])
        dm = [dialogue_metrics(p) for p in load_dialogue_predictions(run_dir, dv).values()] if dv else []
        row["bleu4_target"] = _cell((m["bleu4_target"] for m in dm), 1.0, 2)
        row["bleu4_trajectory"] = _cell((m["bleu4_trajectory"] for m in dm), 1.0, 2)
        row["yes_no_accuracy"] = _cell(m.get("yes_no_accuracy", math.nan) for m in dm)
        rows.append(row)
    return Table("table4", f"Table 4 analogue: ablation of AHD and RAE (heatmaps on {split or '–'}, %)",
                 [("method", "Method"), ("parameters", "Parameters"), ("rbdc", "RBDC"), ("tbdc", "TBDC"),
                  ("bleu4_target", "Target BLEU-4"), ("bleu4_trajectory", "Trajectory BLEU-4"),
                  ("yes_no_accuracy", "Yes/No acc.")], rows,
                 ["w/o AHD: the trained model with an all-zero heatmap fed to the RAE; w/o RAE: the same SFT "
                  "without prompt injection (the AHD still gives heatmaps); w/o both: the untrained backbone, "
                  "zero-shot. Parameters: inference total (LoRA merged)."])


def build_tables(run_dir, cfg=None) -> dict[str, Table]:
    """Every table whose predictions exist (table 2 needs heatmaps, table 3 dialogues)."""
    if not _pred_dir(run_dir).is_dir():
        raise EvalError(f"{_pred_dir(run_dir)}: no predictions (run notebook 04_evaluation first)")
    cfg = _cfg(run_dir, cfg)
    out = {}
    if heatmap_splits(run_dir):
        out["table2"] = table2(run_dir, cfg)
    if dialogue_variants(run_dir):
        out["table3"] = table3(run_dir, cfg)
    if heatmap_splits(run_dir) or dialogue_variants(run_dir):
        out["table4"] = table4(run_dir, cfg)
    if not out:
        raise EvalError(f"{_pred_dir(run_dir)}: neither heatmap nor dialogue predictions found")
    return out


def table_results(tables: Mapping[str, Table]) -> dict[str, Any]:
    """Flat result keys: table2.<split>.<method>.<metric>.{mean,std,n}, table3.<variant>.<metric>...,
    table4.<variant label>.<metric>..."""
    out: dict[str, Any] = {}
    for name, t in tables.items():
        for r in t.rows:
            if name == "table2":
                prefix = f"table2.{r['split_key']}.{r['method_key']}"
            elif name == "table3":
                prefix = f"table3.{r['variant_key']}"
            else:
                prefix = f"{name}.{re.sub(r'[^a-z0-9]+', '_', r['method'].lower()).strip('_')}"
            for k, v in r.items():
                if isinstance(v, Cell):
                    j = v.to_json()
                    for s in ("mean", "std", "n"):
                        out[f"{prefix}.{k}.{s}"] = j[s]
            if name == "table4":
                out[f"{prefix}.parameters"] = r["parameters"]
    return out


def write_tables(run_dir, tables: Mapping[str, Table], results: bool = True) -> list[Path]:
    """tables/<name>.{json,csv,md,tex}, tables/tables.md (all), and results/04_evaluation.json."""
    from tvad.io import atomic_write_json, atomic_write_text
    from tvad.run import flatten

    d = Path(run_dir) / "tables"
    paths = []
    for name, t in tables.items():
        paths.append(atomic_write_json(d / f"{name}.json", t.to_json()))
        paths.append(atomic_write_text(d / f"{name}.csv", t.to_csv()))
        paths.append(atomic_write_text(d / f"{name}.md", t.to_markdown()))
        paths.append(atomic_write_text(d / f"{name}.tex", t.to_latex()))
    paths.append(atomic_write_text(d / "tables.md", "\n".join(t.to_markdown() for t in tables.values())))
    if results:
        p = Path(run_dir) / "results" / "04_evaluation.json"
        old = json.loads(p.read_text()) if p.exists() else {}
        old = {k: v for k, v in old.items() if not k.startswith(tuple(f"{n}." for n in tables))}
        old.update(flatten(table_results(tables)))
        paths.append(atomic_write_json(p, old))
    return paths


def main_eval(run_dir, quiet: bool = False) -> dict[str, Table]:
    """`tvad eval --run-dir DIR`: rebuild and write the tables from the saved predictions."""
    if not Path(run_dir).is_dir():
        raise EvalError(f"{run_dir}: no such run directory")
    tables = build_tables(run_dir)
    write_tables(run_dir, tables)
    if not quiet:
        for t in tables.values():
            print(t.to_markdown())
    return tables


# -- notebook 04: the model runs that produce the predictions ----------------------------------------

HEATMAP_SPLITS = {"val": "validation", "test_seen": "test_seen", "test": "test"}  # result key -> dataset split
DIALOGUE_IMPORTS = {"rae": "rae", "no_rae": "no_rae", "backbone": "backbone_zero_shot",  # stage-2 file -> variant
                    "rae_oracle": "rae_oracle"}


@dataclass
class HeatmapRun:
    """What `predict_heatmaps` did: the splits and methods saved, seconds per part."""

    splits: list[str]
    methods: list[str]
    seconds: dict[str, float]
    skipped: list[str]


def _log(log, msg):
    if log:
        log(msg)


def one_shot_samples(train_samples: Sequence, seed: int = 0) -> list:
    """The one-shot training set: one annotated training video (the seed-th anomalous one, cyclic),
    repeated as many times as the full set has videos, so that the schedule has the same steps."""
    anomalous = [s for s in train_samples if np.asarray(s.frame_labels).any()]
    if not anomalous:
        raise EvalError("one-shot AHD: no anomalous training video")
    ex = anomalous[seed % len(anomalous)]
    return [ex] * len(train_samples)


def predict_heatmaps(run, force: bool = False, methods: Sequence[str] = ("ahd", "ahd_one_shot", "framediff", "decoder"),
                     splits: Sequence[str] = ("val", "test_seen", "test"), decoder_max_videos: int | None = None,
                     num_examples: int = 3, progress: bool = True, log=print) -> HeatmapRun:
    """Notebook 04, heatmaps: the best AHD of notebook 02 (seed cfg.stage1.seed; other seeds of
    cfg.eval.seeds are trained here), the one-shot AHD (one annotated training video), frame
    differencing and decoder-driven heatmaps on each split, saved as predictions; a few anomalous
    `test` clips with all their heatmaps saved as figure examples. Existing files are kept unless
    `force`. The feature cache of notebook 02 is reused."""
    import dataclasses
    import time

    import torch

    from tvad.baselines import framediff_heatmaps
    from tvad.model.ahd import load_ahd
    from tvad.model.backbone import from_config
    from tvad.model.detector import find_checkpoint
    from tvad.train import stage1
    from tvad.train.features import FeatureCache

    cfg = run.config
    d = run.dir
    seconds: dict[str, float] = {}
    skipped: list[str] = []
    t0 = time.time()
    seeds = [int(s) for s in (cfg.eval.seeds or [cfg.stage1.seed])]
    thr = cfg.eval.threshold

    def have(split, method):
        return all((_pred_dir(d) / "heatmaps" / split / f"{method}.seed{s}.npz").exists()
                   for s in (seeds if method.startswith("ahd") else [0]))

    todo = {sp: [m for m in methods if force or not have(sp, m)] for sp in splits}
    need_examples = force or not any((_pred_dir(d) / "examples").glob("*.npz"))
    if not any(todo.values()) and not need_examples:
        _log(log, f"[eval] heatmap predictions exist for {list(splits)} x {list(methods)} (force=True redoes them)")
        return HeatmapRun(list(splits), list(methods), {}, [f"{sp}/{m}" for sp in splits for m in methods])
    bb = from_config(cfg.backbone)
    cache = FeatureCache(d / "features", bb, cfg.backbone.layers)
    vids = {k: stage1.load_split(cfg, HEATMAP_SPLITS.get(k, k), run) for k in set(splits) | {"train"}}
    samples = {k: stage1.prepare(v, cache, fps=cfg.data.video_fps, progress=progress, desc=f"features {k}")
               for k, v in vids.items()}
    seconds["features"] = time.time() - t0
    meta = stage1.backbone_meta(bb, cfg)
    best = find_checkpoint(d)

    def ahd_for(method: str, seed: int):
        if method == "ahd" and seed == cfg.stage1.seed:
            return best
        out = d / "evaluation" / f"{method}_seed{seed}"
        if not force and (out / "best" / "ahd.json").exists():
            return out / "best"
        s1 = dataclasses.replace(cfg.stage1, seed=seed)
        train = samples["train"] if method == "ahd" else one_shot_samples(samples["train"], seed)
        ahd = stage1.build_ahd(bb, cfg.ahd, cfg.backbone.layers, cfg.data.dataset, cfg.backbone.text_encoder, seed=seed)
        _log(log, f"[eval] training {method} (seed {seed}) on {len(train)} clips' videos")
        res = stage1.train(ahd, train, samples.get("val") or [], s1, out, eval_cfg=cfg.eval, meta=meta,
                           frame_score=cfg.ahd.frame_score, topk=cfg.ahd.topk, progress=progress, resume=not force)
        return res.best_dir

    heat_cache: dict[tuple[str, str], dict] = {}
    for split in splits:
        ss = samples[split]
        save_heatmap_gt(d, split, {s.name: s.frame_labels for s in ss}, {s.name: s.gt_tracks for s in ss},
                        {s.name: s.anomaly_type for s in ss})
        for method in todo[split]:
            t1 = time.time()
            if method in ("ahd", "ahd_one_shot"):
                for seed in seeds:
                    ahd, _ = load_ahd(ahd_for(method, seed), backbone_identity=bb.identity, layers=cfg.backbone.layers)
                    ahd = ahd.to(bb.device)
                    heat = {s.name: stage1.predict(ahd, s, cfg.ahd.frame_score, cfg.ahd.topk)[0] for s in ss}
                    if seed == seeds[0]:
                        heat_cache[(split, method)] = heat
                    save_heatmap_predictions(d, split, method, *scores_and_regions(heat, thr, cfg.ahd.frame_score,
                                                                                    cfg.ahd.topk), seed=seed)
            elif method == "framediff":
                heat = {s.name: framediff_heatmaps(np.asarray(v.read_frames())) for s, v in zip(ss, vids[split])}
                heat_cache[(split, method)] = heat
                save_heatmap_predictions(d, split, method, *scores_and_regions(heat, thr))
            elif method == "decoder":
                heat = _decoder_split(run, bb, vids[split], ss, decoder_max_videos, progress)
                if heat is None:
                    skipped.append(f"{split}/decoder")
                    continue
                heat_cache[(split, method)] = heat
                save_heatmap_predictions(d, split, method, *scores_and_regions(heat, thr),
                                         meta={"videos": len(heat)})
            else:
                raise EvalError(f"unknown heatmap method {method!r}; known: {list(HEATMAP_METHODS)}")
            seconds[f"{split}.{method}"] = time.time() - t1
            _log(log, f"[eval] {split}: {method} in {time.time() - t1:.0f}s")
    if need_examples and "test" in samples:
        t1 = time.time()
        _save_examples(run, bb, vids["test"], samples["test"], heat_cache, num_examples, best, progress)
        seconds["examples"] = time.time() - t1
    seconds["total"] = time.time() - t0
    torch.set_grad_enabled(True)
    return HeatmapRun(list(splits), list(methods), seconds, skipped)


_DECODER_MODEL = {}


def _decoder_model(run, bb):
    """The frozen backbone as a chat model without prompts (the decoder-driven baseline's model)."""
    from tvad.model.tvad import TVAD

    key = id(bb)
    if key not in _DECODER_MODEL:
        _DECODER_MODEL.clear()
        _DECODER_MODEL[key] = TVAD(bb, None, None, rae=None, use_rae=False, use_ahd=False,
                                   meta={"fps": float(run.config.data.video_fps)})
    return _DECODER_MODEL[key]


def _decoder_split(run, bb, videos, samples, max_videos, progress) -> dict | None:
    """Decoder-driven heatmaps of a split (at most max_videos, anomalous ones first; the others
    are left out of that method's evaluation: its table row says so)."""
    from tqdm.auto import tqdm

    from tvad.model.decoder_heatmap import decoder_heatmaps

    model = _decoder_model(run, bb)
    pairs = list(zip(samples, videos))
    if max_videos is not None:
        pairs = sorted(pairs, key=lambda p: not np.asarray(p[0].frame_labels).any())[: int(max_videos)]
    if not pairs:
        return None
    out = {}
    for s, v in tqdm(pairs, desc="decoder heatmaps", disable=not progress):
        out[s.name] = decoder_heatmaps(model, np.asarray(v.read_frames()), fps=run.config.data.video_fps)
    if max_videos is not None:  # the metrics need every video of the split: the others get zero heat
        for s in samples:
            if s.name not in out:
                out[s.name] = np.zeros((s.num_frames, *s.frame_size), np.float32)
    return out


def _save_examples(run, bb, videos, samples, heat_cache, n, best_dir, progress, max_frames: int = 48) -> None:
    """The first n anomalous test clips with frames, GT masks, GT tracks and every heatmap (at most
    `max_frames` frames each, around the anomaly)."""
    import torch

    from tvad.baselines import framediff_heatmaps
    from tvad.model.ahd import load_ahd
    from tvad.model.decoder_heatmap import decoder_heatmaps
    from tvad.train import stage1

    cfg = run.config
    ahd = None
    picked = [(s, v) for s, v in zip(samples, videos) if np.asarray(s.frame_labels).any()][:n]
    for s, v in picked:
        frames = np.asarray(v.read_frames())
        masks = np.asarray(v.read_masks())
        heat = {}
        for m in ("ahd", "decoder", "framediff"):
            h = (heat_cache.get(("test", m)) or {}).get(s.name)
            if h is None or (m == "decoder" and not np.asarray(h).any()):
                if m == "ahd":
                    if ahd is None:
                        ahd, _ = load_ahd(best_dir, backbone_identity=bb.identity, layers=cfg.backbone.layers)
                        ahd = ahd.to(bb.device)
                    h = stage1.predict(ahd, s, cfg.ahd.frame_score, cfg.ahd.topk)[0]
                elif m == "decoder":
                    h = decoder_heatmaps(_decoder_model(run, bb), frames, fps=cfg.data.video_fps)
                else:
                    h = framediff_heatmaps(frames)
            heat[m] = h
        tracks = np.asarray(s.gt_tracks, float).reshape(-1, 6)
        a = 0
        if len(frames) > max_frames:  # long videos (paper preset): a window over the anomalous span
            first = int(np.flatnonzero(np.asarray(s.frame_labels))[0])
            a = max(0, min(first - max_frames // 6, len(frames) - max_frames))
            frames, masks = frames[a:a + max_frames], masks[a:a + max_frames]
            heat = {k: np.asarray(h)[a:a + max_frames] for k, h in heat.items()}
            tracks = tracks[(tracks[:, 1] >= a) & (tracks[:, 1] < a + max_frames)].copy()
            tracks[:, 1] -= a
        save_example(run.dir, s.name, frames, masks, heat, tracks, {"type": s.anomaly_type, "first_frame": a,
                                                                     "fps": float(cfg.data.video_fps)})
    torch.set_grad_enabled(True)


def import_stage2_predictions(run) -> dict[str, str]:
    """Copy notebook 03's test predictions (stage2/<variant>.test_predictions.json) and parameter
    counts (results/03_rae_sft.json params.*) into predictions/. Returns {variant: source}."""
    d = run.dir
    done = {}
    for src, variant in DIALOGUE_IMPORTS.items():
        f = d / "stage2" / f"{src}.test_predictions.json"
        if f.exists():
            save_dialogue_predictions(d, variant, json.loads(f.read_text()), seed=int(run.config.stage2.seed))
            done[variant] = str(f)
    r = run.results("03_rae_sft")
    parts = {}
    for v in ("rae", "no_rae", "backbone"):
        c = {k.split(".")[-1]: int(x) for k, x in r.items() if k.startswith(f"params.{v}.")}
        if c:
            parts[v] = c
    if parts:
        counts = {}
        base = lambda c: c.get("vision", 0) + c.get("language", 0) + c.get("lm_head", 0)  # noqa: E731
        if "rae" in parts:
            c = parts["rae"]
            counts["full"] = {**c, "total": base(c) + c.get("ahd", 0) + c.get("rae", 0) + c.get("prompt_tokens", 0)}
            counts["no_ahd"] = {**c, "ahd": 0, "total": counts["full"]["total"] - c.get("ahd", 0)}
        if "no_rae" in parts:
            c = parts["no_rae"]
            counts["no_rae"] = {**c, "total": base(c) + c.get("ahd", 0)}
        c = parts.get("backbone") or parts.get("no_rae") or parts.get("rae")
        counts["backbone"] = {"vision": c.get("vision", 0), "language": c.get("language", 0),
                              "lm_head": c.get("lm_head", 0), "total": base(c)}
        save_parameter_counts(d, counts)
    return done


def one_shot_records(records: Sequence[dict], example: dict) -> list[dict]:
    """The test dialogues with one in-context example (a training dialogue's questions and
    reference answers, as text) appended to the system prompt."""
    lines = ["Here is an example of a dialogue about another surveillance clip:"]
    for m in example["messages"][1:]:
        lines.append(f"{'Q' if m['role'] == 'user' else 'A'}: {m['content']}")
    out = []
    for r in records:
        msgs = [dict(m) for m in r["messages"]]
        if msgs and msgs[0]["role"] == "system":
            msgs[0]["content"] = msgs[0]["content"] + "\n" + "\n".join(lines)
        else:
            msgs.insert(0, {"role": "system", "content": "\n".join(lines)})
        out.append({**r, "messages": msgs})
    return out


def predict_dialogues(run, force: bool = False, variants: Sequence[str] = ("backbone_one_shot", "no_ahd"),
                      progress: bool = True, log=print) -> dict[str, dict]:
    """Notebook 04, dialogue: imports notebook 03's predictions (rae, no_rae, backbone zero-shot and,
    with `stage2.oracle`, rae_oracle) and runs the variants it does not make: `backbone_one_shot`
    (the untrained backbone with one in-context training dialogue) and `no_ahd` (the trained RAE
    model fed all-zero heatmaps), on the same held-out dialogues. Returns {variant: metrics}."""
    import time

    from tvad.train import stage2

    d = run.dir
    cfg = run.config
    imported = import_stage2_predictions(run)
    _log(log, f"[eval] imported dialogue predictions: {sorted(imported) or 'none (run notebook 03 first)'}")
    rae_final = d / "stage2" / "rae" / "phase_b" / "final"
    test_file = d / "stage2" / "test_corpus" / "phase_b.val.jsonl"
    from tvad.model.detector import find_checkpoint

    try:
        ahd_dir = find_checkpoint(d)
    except Exception:  # no stage-1 checkpoint: nothing to run (reported below)
        ahd_dir = None
    # what each variant's answers were made from: a retrained stage 2 (or stage 1) makes them stale
    sources = {"no_ahd": _source([rae_final, test_file]), "backbone_one_shot": _source([ahd_dir, test_file])}
    todo = [v for v in variants if force or not load_dialogue_predictions(d, v)
            or _read_source(d, v, int(cfg.stage2.seed)) != sources.get(v)]
    if todo and not (test_file.exists() and (rae_final / "tvad.json").exists()):
        _log(log, f"[eval] skipping {todo}: notebook 03's test dialogues or checkpoint are missing")
        todo = []
    if todo:
        from tvad.data import load_split
        from tvad.model import build_model, load
        from tvad.io import atomic_write_text

        records = stage2.load_records(test_file)
        vids = [v for s in ("train", "validation", "test")
                for v in load_split(cfg.data, s, root=run.resolve(cfg.data.root), seed=cfg.seed)]
        resolver = stage2.ClipResolver(vids)
        for v in todo:
            t0 = time.time()
            if v == "no_ahd":
                model = load(rae_final)
                clips = stage2.ClipStore(model, resolver, d / "stage2" / "clips",
                                         video_embeds=cfg.stage2.video_input == "embeds")
                _, preds = stage2.evaluate_model(model, records, stage2.HeatmapView(clips, "zeros"),
                                                 cfg.stage2.eval_max_new_tokens, progress=progress)
            elif v == "backbone_one_shot":
                recs = stage2.corpus_records(run)
                example = next((r for r in recs["b.train"] if r["clip"].get("label")), recs["b.train"][0])
                meta = {"fps": float(example["clip"].get("fps") or cfg.data.clip_fps or 1.0),
                        "system_prompt": records[0]["messages"][0]["content"]}
                model = build_model(cfg, find_checkpoint(d), use_rae=False, meta=meta)
                clips = stage2.ClipStore(model, resolver, d / "stage2" / "clips",
                                         video_embeds=cfg.stage2.video_input == "embeds")
                _, preds = stage2.evaluate_model(model, one_shot_records(records, example), clips,
                                                 cfg.stage2.eval_max_new_tokens, progress=progress)
            else:
                raise EvalError(f"unknown dialogue variant {v!r}; 04 makes backbone_one_shot and no_ahd")
            save_dialogue_predictions(d, v, preds, seed=int(cfg.stage2.seed))
            atomic_write_text(_source_path(d, v, int(cfg.stage2.seed)), sources.get(v) or "")
            _log(log, f"[eval] {v}: {len(preds)} answers in {time.time() - t0:.0f}s")
            del model
    return {v: dialogue_metrics(p) for v in dialogue_variants(d) for p in load_dialogue_predictions(d, v).values()}


def save_dialogue_example(run, force: bool = False, max_new_tokens: int | None = None) -> Path | None:
    """The full model's own multi-turn dialogue on an abnormal test clip, with its frames and
    heatmap, for the dialogue figure (predictions/dialogue_example.json + examples/_dialogue.npz)."""
    from tvad.io import atomic_write_json
    from tvad.train import stage2

    d = run.dir
    out = _pred_dir(d) / "dialogue_example.json"
    if out.exists() and not force:
        return out
    rae_final = d / "stage2" / "rae" / "phase_b" / "final"
    test_file = d / "stage2" / "test_corpus" / "phase_b.val.jsonl"
    if not ((rae_final / "tvad.json").exists() and test_file.exists()):
        return None
    from tvad.data import load_split
    from tvad.model import load

    cfg = run.config
    model = load(rae_final)
    vids = [v for v in load_split(cfg.data, "test", root=run.resolve(cfg.data.root), seed=cfg.seed)]
    clips = stage2.ClipStore(model, stage2.ClipResolver(vids), d / "stage2" / "clips",
                             video_embeds=cfg.stage2.video_input == "embeds")
    ex = stage2.example_dialogue(model, stage2.load_records(test_file), clips,
                                 max_new_tokens or cfg.stage2.eval_max_new_tokens)
    _save_npz(_pred_dir(d) / "dialogue_example.npz", {"frames": np.asarray(ex["frames"], np.uint8),
                                                      "heat": np.asarray(ex["heat"], np.float16)}, {"id": ex["id"]})
    return atomic_write_json(out, {"id": ex["id"], "turns": ex["turns"]})


def load_dialogue_example(run_dir) -> dict | None:
    p = _pred_dir(run_dir) / "dialogue_example.json"
    if not p.exists():
        return None
    ex = json.loads(p.read_text())
    _, a = _load_npz(_pred_dir(run_dir) / "dialogue_example.npz")
    msgs = []
    for t in ex["turns"]:
        msgs += [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": t["answer"]}]
    return {**ex, "frames": a["frames"], "heat": a["heat"].astype(np.float32), "messages": msgs}


# -- notebook 05: everything a figure needs, from the run dir only -----------------------------------

def training_histories(run_dir) -> tuple[dict | None, dict[str, dict]]:
    """(stage1/history.json, {"<variant> phase A": {"log": [...]}, ...}) of a run directory."""
    d = Path(run_dir)
    s1 = d / "stage1" / "history.json"
    stage1 = json.loads(s1.read_text()) if s1.exists() else None
    stage2 = {}
    for p in sorted(d.glob("stage2/*/phase_*/history.json")):
        variant, phase = p.parent.parent.name, p.parent.name.split("_")[-1].upper()
        stage2[f"{variant} phase {phase}"] = json.loads(p.read_text())
    return stage1, stage2


def make_figures(run_dir, out_dir=None, split: str = "test", cfg=None, log=print) -> dict[str, list[Path]]:
    """Notebook 05 in one call: every figure whose inputs exist, as PNG + PDF in
    `<run_dir>/figures/` (or out_dir). Returns {figure name: paths}; a missing input is logged."""
    import matplotlib.pyplot as plt

    from tvad.metrics import regions_from_heatmaps
    from tvad.viz import figures as F

    d = Path(run_dir)
    out = Path(out_dir) if out_dir else d / "figures"
    cfg = _cfg(d, cfg)
    made: dict[str, list[Path]] = {}

    def emit(name, fig):
        made[name] = F.save(fig, out, name)
        plt.close(fig)

    examples = load_examples(d) if (_pred_dir(d) / "examples").is_dir() else []
    if examples:
        emit("heatmap_grid", F.heatmap_grid(examples[:2]))
        ex = examples[0]
        h = ex["heatmaps"].get("ahd")
        emit("trajectory", F.trajectory(ex["frames"], ex.get("gt_tracks"),
                                        regions_from_heatmaps(h, cfg.eval.threshold) if h is not None else None,
                                        ex.get("masks"), h, cfg.eval.threshold, title=ex["name"]))
    else:
        _log(log, "[figures] no examples: heatmap_grid and trajectory skipped")
    dex = load_dialogue_example(d)
    if dex is not None:
        emit("dialogue", F.dialogue(dex["frames"], dex["heat"], dex["messages"], title=dex["id"]))
    else:
        _log(log, "[figures] no dialogue example: dialogue skipped")
    splits = heatmap_splits(d)
    if splits:
        curves, det = {}, {}
        for sp in splits:
            gt = load_heatmap_gt(d, sp)
            curves[SPLIT_LABELS.get(sp, sp)] = {}
            for m in heatmap_methods(d, sp):
                preds = load_heatmap_predictions(d, sp, m)
                s, r = preds[min(preds)]
                try:
                    curves[SPLIT_LABELS.get(sp, sp)][m] = roc_curve(s, gt)
                except EvalError:
                    pass
                if sp == (split if split in splits else splits[-1]):
                    det[m] = detection_curves(r, gt, cfg.eval)
        emit("roc", F.roc({k: v for k, v in curves.items() if v}, labels=HEATMAP_METHODS))
        emit("rbdc_curves", F.rbdc_curves(det, cfg.eval.max_fpr,
                                          title=f"region / track detection on {SPLIT_LABELS.get(split, split)}",
                                          labels=HEATMAP_METHODS))
    else:
        _log(log, "[figures] no heatmap predictions: roc and rbdc_curves skipped")
    s1, s2 = training_histories(d)
    if s1 or s2:
        emit("training_curves", F.training_curves(s1, s2))
    return made
