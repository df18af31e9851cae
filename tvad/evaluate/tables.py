"""Tables 2, 3 and 4 from the prediction store (JSON, CSV, Markdown, LaTeX), and the curves the
figures draw from the same files.

Every number is recomputed from `<run_dir>/predictions/` (`tvad.evaluate.store`), so a table can be
re-derived, audited or extended without a model or a GPU (`tvad eval --run-dir DIR`). Tables go to
`<run_dir>/tables/table{2,3,4}.{json,csv,md,tex}`; flat result keys to `results/04_evaluation.json`
(e.g. `table2.test.ahd.micro_auc.mean`). Metrics are stored as fractions (BLEU-4 as 0-100) and
printed as percentages, mean ± std over seeds (std with n - 1, shown only with two seeds or more).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as _roc

from tvad.evaluate.store import (
    DIALOGUE_VARIANTS,
    HEATMAP_METHODS,
    SPLIT_LABELS,
    EvalError,
    GroundTruth,
    _cfg,
    _pred_dir,
    dialogue_path,
    dialogue_variants,
    heatmap_methods,
    heatmap_path,
    heatmap_splits,
    load_dialogue_predictions,
    load_heatmap_gt,
    load_heatmap_predictions,
    load_parameter_counts,
)
from tvad.io import atomic_write_json, atomic_write_text
from tvad.metrics import dialogue_metrics, macro_auc, micro_auc, rbdc_tbdc
from tvad.metrics.regions import _counts, _pool  # the ranks rbdc_tbdc uses; same numbers as the tables
from tvad.run import flatten

# Table 4: variant -> (parameter-count key, heatmap method or None, dialogue variant or None)
ABLATIONS = {
    "T-VAD w/o AHD": ("no_ahd", None, "no_ahd"),
    "T-VAD w/o RAE": ("no_rae", "ahd", "no_rae"),
    "T-VAD w/o AHD & RAE": ("backbone", None, "backbone_zero_shot"),
    "T-VAD": ("full", "ahd", "rae"),
}


TABLE4_ONLY = {"no_ahd"}  # dialogue variants shown in the ablation only


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


def heatmap_metrics(scores: Mapping[str, Any], regions: Mapping[str, Any], gt: GroundTruth,
                    eval_cfg=None) -> dict[str, float]:
    """micro/macro frame AUC and RBDC/TBDC. NaN only where a metric is undefined: micro AUC without
    both normal and anomalous frames, RBDC/TBDC without any GT region. Anything else wrong with the
    inputs (non-finite scores, bad regions, scores outside [0, 1] for the padded macro AUC) is an
    EvalError naming the video."""

    missing = [n for n in gt.names if n not in scores or n not in regions]
    if missing:
        raise EvalError(f"predictions lack {len(missing)} video(s) of the ground truth, e.g. {missing[0]!r}")
    for n in gt.names:
        if len(scores[n]) != len(gt.labels[n]):
            raise EvalError(f"video {n!r}: {len(scores[n])} frame scores for {len(gt.labels[n])} labelled frames")
    sigma = getattr(eval_cfg, "sigma", None)
    s = {n: scores[n] for n in gt.names}
    labelled = [np.asarray(gt.labels[n]) for n in gt.names]
    both = any(y.any() for y in labelled) and any((y == 0).any() for y in labelled)
    out = {"micro_auc": _metric("micro AUC", lambda: micro_auc(s, gt.labels, sigma=sigma)) if both else math.nan,
           "macro_auc": _metric("macro AUC", lambda: macro_auc(s, gt.labels, sigma=sigma))}
    kw = dict(iou=getattr(eval_cfg, "iou", 0.1), hit_ratio=getattr(eval_cfg, "hit_ratio", 0.1),
              max_fpr=getattr(eval_cfg, "max_fpr", 1.0))
    has_gt_regions = any(np.asarray(gt.gt_tracks[n]).size for n in gt.names)
    rb = _metric("RBDC/TBDC", lambda: rbdc_tbdc({n: regions[n] for n in gt.names}, gt.gt_tracks, gt.num_frames,
                                                 **kw)) if has_gt_regions else (math.nan, math.nan)
    out["rbdc"], out["tbdc"] = float(rb[0]), float(rb[1])
    return out


def _metric(what: str, fn):
    try:
        return fn()
    except ValueError as e:
        raise EvalError(f"{what}: {e}") from None


def _heatmap_seeds(run_dir, split: str, method: str, gt: GroundTruth, eval_cfg) -> list[dict[str, float]]:
    """heatmap_metrics of each saved seed of one method; an error names the prediction file."""
    out = []
    for seed, (s, r) in load_heatmap_predictions(run_dir, split, method).items():
        try:
            out.append(heatmap_metrics(s, r, gt, eval_cfg))
        except EvalError as e:
            raise EvalError(f"{heatmap_path(run_dir, split, method, seed)}: {e}") from None
    return out


def _dialogue_seeds(run_dir, variant: str, dataset: str | None = None) -> list[dict[str, float]]:
    """dialogue_metrics of each saved seed of one variant (only the answers about clips of `dataset`,
    when given); an error names the prediction file."""
    out = []
    for seed, preds in load_dialogue_predictions(run_dir, variant).items():
        if dataset is not None:
            preds = [p for p in preds if (p.get("dataset") or "") == dataset]
            if not preds:
                continue
        try:
            out.append(dialogue_metrics(preds))
        except (ValueError, KeyError, TypeError) as e:
            raise EvalError(f"{dialogue_path(run_dir, variant, seed)}: {e}") from None
    return out


DATASET_ORDER = ("shanghaitech", "ubnormal", "synthetic")  # Table 3's columns in the paper's order


def dialogue_datasets(run_dir) -> list[str]:
    """The datasets the saved dialogue answers are about (their clips' source), paper order first;
    answers saved before the field existed count as one unnamed dataset ("")."""
    have = {p.get("dataset") or "" for v in dialogue_variants(run_dir)
            for preds in load_dialogue_predictions(run_dir, v).values() for p in preds}
    return [d for d in DATASET_ORDER if d in have] + sorted(have - set(DATASET_ORDER))


def roc_curve(scores: Mapping[str, Any], gt: GroundTruth) -> tuple[np.ndarray, np.ndarray, float]:
    """Pooled (micro) ROC: (fpr, tpr, auc) over all frames of the split."""

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


def table2(run_dir, cfg=None) -> Table:
    """AHD (one-shot, fine-tuned) against frame differencing and decoder-driven heatmaps, per split."""
    cfg = _cfg(run_dir, cfg)
    rows = []
    for split in heatmap_splits(run_dir):
        gt = load_heatmap_gt(run_dir, split)
        first = True
        for method in heatmap_methods(run_dir, split):
            per_seed = _heatmap_seeds(run_dir, split, method, gt, cfg.eval)
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
    """Target / Trajectory BLEU-4, Yes/No (balanced) accuracy, the Target category accuracy and the
    count of cut answers of each dialogue variant: over all
    held-out dialogues, and per dataset (the paper's ShanghaiTech / UBnormal columns) when the
    answers are about clips of more than one."""
    sets = dialogue_datasets(run_dir)
    per_dataset = len(sets) > 1
    rows = []
    for ds in ([None] + sets if per_dataset else [None]):
        for v in [v for v in dialogue_variants(run_dir) if v not in TABLE4_ONLY]:
            per_seed = _dialogue_seeds(run_dir, v, ds)
            if ds is not None and not per_seed:
                continue
            row = {"variant_key": v if ds is None else f"{ds}.{v}", "method": DIALOGUE_VARIANTS.get(v, v),
                   "bleu4_target": _cell((m["bleu4_target"] for m in per_seed), 1.0, 2),
                   "bleu4_trajectory": _cell((m["bleu4_trajectory"] for m in per_seed), 1.0, 2),
                   "yes_no_accuracy": _cell(m.get("yes_no_accuracy", math.nan) for m in per_seed),
                   "yes_no_balanced_accuracy": _cell(m.get("yes_no_balanced_accuracy", math.nan) for m in per_seed),
                   "target_category_accuracy": _cell(m.get("target_category_accuracy", math.nan) for m in per_seed),
                   "answers_cut": _cell((m.get("answers_cut", math.nan) for m in per_seed), 1.0, 0)}
            if per_dataset:
                row = {"dataset": ds or "all", **row}
            rows.append(row)
    cols = [("method", "Method"), ("bleu4_target", "Target BLEU-4"), ("bleu4_trajectory", "Trajectory BLEU-4"),
            ("yes_no_accuracy", "Yes/No acc."), ("yes_no_balanced_accuracy", "Yes/No bal. acc."),
            ("target_category_accuracy", "right category %"), ("answers_cut", "cut answers")]
    return Table("table3", "Table 3 analogue: dialogue answers on held-out clips (BLEU-4, accuracy %)",
                 ([("dataset", "Dataset")] if per_dataset else []) + cols, rows,
                 ["BLEU-4: sacrebleu sentence BLEU against the best reference, macro over answers; Yes/No "
                  "from the answer's leading word (unparsed answers count as wrong); right category: Target "
                  "answers about anomalous clips naming only object kinds their references name; cut answers: "
                  "answers that hit their token cap or do not end a sentence"]
                 + (["Dataset: the clips' source (ShanghaiTech: its held-out validation clips; UBnormal and the "
                     "synthetic set: their test clips); 'all': every held-out dialogue"] if per_dataset else []))


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
            heat[m] = _heatmap_seeds(run_dir, split, m, gt, cfg.eval)
    rows = []
    for label, (pkey, hm, dv) in ABLATIONS.items():
        n = (counts.get(pkey) or {}).get("total")
        row = {"method": label, "parameters": f"{n / 1e6:.2f}M" if n else "–"}
        for k in ("rbdc", "tbdc"):
            row[k] = _cell(m[k] for m in heat.get(hm, [])) if hm else _cell([])
        dm = _dialogue_seeds(run_dir, dv) if dv else []
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
