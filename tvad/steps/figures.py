"""Notebook 05 (figures) in one call: every figure whose inputs exist, from the run directory's saved
predictions only (no model, no GPU), as PNG + PDF in `<run_dir>/figures/`; results/05_figures.json."""

from __future__ import annotations

from pathlib import Path

from tvad.evaluate.figures import make_figures

RESULTS = "05_figures"
FIGURES = ("heatmap_grid", "trajectory", "dialogue", "roc", "rbdc_curves", "training_curves")  # what 05 makes


def run_figures(run, split: str = "test", log=print) -> dict[str, list[Path]]:
    """{figure name: [png, pdf]}; the figures whose inputs are missing are logged and left out."""
    made = make_figures(run.dir, split=split, cfg=run.config, log=log)
    run.write_results(RESULTS, {"figures.count": len(made), "figures.names": ",".join(sorted(made))})
    missing = [n for n in FIGURES if n not in made]
    log(f"figures: {sorted(made)} | missing inputs for: {missing or 'none'}")
    return made
