"""Notebook 05's figure assembly: every figure whose inputs exist in a run directory, drawn by
`tvad.viz.figures` from the saved predictions only (no model, no GPU). The heatmap grid and the
dialogue figure each show a success and a failure, labelled as such, chosen by the rules of
`tvad.evaluate.selection`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from tvad.evaluate.store import (
    HEATMAP_METHODS,
    SPLIT_LABELS,
    EvalError,
    _cfg,
    _pred_dir,
    heatmap_methods,
    heatmap_path,
    heatmap_splits,
    load_dialogue_example,
    load_examples,
    load_heatmap_gt,
    load_heatmap_predictions,
    training_histories,
)
from tvad.evaluate.selection import pick_heatmap_examples
from tvad.evaluate.tables import detection_curves, roc_curve
from tvad.metrics import regions_from_heatmaps
from tvad.viz import figures as F


def dialogue_title(ex: dict) -> str:
    """A dialogue example's heading: "Success: <what the shown dialogue got right>" or "Failure:
    <what it got wrong>", with the rule that chose it (`tvad.evaluate.selection`); an older file's
    single example: its id."""
    role = ex.get("role") or "example"
    if role not in ("success", "failure"):
        return str(ex.get("id", ""))
    return f"{role.capitalize()}: {ex.get('reason') or 'no verdict'} [{ex.get('id', '')}; chosen as the " \
           f"{ex.get('rule') or '?'}]"


def _log(log, msg):
    if log:
        log(msg)


def make_figures(run_dir, out_dir=None, split: str = "test", cfg=None, log=print) -> dict[str, list[Path]]:
    """Notebook 05 in one call: every figure whose inputs exist, as PNG + PDF in
    `<run_dir>/figures/` (or out_dir). Returns {figure name: paths}; a missing input is logged.
    Raises EvalError (one line, naming the missing inputs) when no figure can be made at all, and
    when a saved prediction is missing or corrupt (naming the file)."""

    d = Path(run_dir)
    out = Path(out_dir) if out_dir else d / "figures"
    cfg = _cfg(d, cfg)
    made: dict[str, list[Path]] = {}

    def emit(name, fig):
        made[name] = F.save(fig, out, name)
        plt.close(fig)

    examples = load_examples(d) if (_pred_dir(d) / "examples").is_dir() else []
    if examples:
        picked = pick_heatmap_examples(examples, "ahd")  # one success, one failure (tvad.evaluate.selection)
        if picked:
            emit("heatmap_grid", F.heatmap_grid([e for e, _ in picked], titles=[t for _, t in picked]))
        else:
            _log(log, "[figures] no example with an AHD heatmap and a GT region: heatmap_grid shows the first two, "
                      "unlabelled")
            emit("heatmap_grid", F.heatmap_grid(examples[:2]))
        ex = picked[0][0] if picked else examples[0]
        h = ex["heatmaps"].get("ahd")
        emit("trajectory", F.trajectory(ex["frames"], ex.get("gt_tracks"),
                                        regions_from_heatmaps(h, cfg.eval.threshold) if h is not None else None,
                                        ex.get("masks"), h, cfg.eval.threshold, title=ex["name"]))
    else:
        _log(log, "[figures] no examples: heatmap_grid and trajectory skipped")
    dex = load_dialogue_example(d)
    if dex is not None:
        emit("dialogue", F.dialogue_examples([{**e, "title": dialogue_title(e)} for e in dex["examples"]]))
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
                if not preds:
                    continue
                s, r = preds[min(preds)]
                try:
                    curves[SPLIT_LABELS.get(sp, sp)][m] = roc_curve(s, gt)
                except EvalError:
                    pass
                if sp == (split if split in splits else splits[-1]):
                    if not any(t.size for t in gt.gt_tracks.values()):
                        _log(log, f"[figures] {sp}: no ground-truth regions, no detection curve of {m}")
                        continue
                    try:
                        det[m] = detection_curves(r, gt, cfg.eval)
                    except ValueError as e:
                        raise EvalError(f"{heatmap_path(d, sp, m, min(preds))}: {e}") from None
        emit("roc", F.roc({k: v for k, v in curves.items() if v}, labels=HEATMAP_METHODS))
        emit("rbdc_curves", F.rbdc_curves(det, cfg.eval.max_fpr, labels=HEATMAP_METHODS,
                                          title=f"region / track detection on {SPLIT_LABELS.get(split, split)}"))
    else:
        _log(log, "[figures] no heatmap predictions: roc and rbdc_curves skipped")
    s1, s2 = training_histories(d)
    if s1 or s2:
        emit("training_curves", F.training_curves(s1, s2))
    else:
        _log(log, "[figures] no training histories: training_curves skipped")
    if not made:
        p = _pred_dir(d)
        raise EvalError(f"{d}: no figure inputs (none of {p / 'examples'}/*.npz, {p / 'dialogue_example.json'}, "
                        f"{p / 'heatmaps'}/<split>/gt.npz, stage1/history.json, stage2/*/phase_*/history.json); "
                        "run notebook 04_evaluation first")
    return made
