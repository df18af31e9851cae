"""Notebook 04 (evaluation) in one call: every model run once on the held-out data (heatmaps of the
AHD, the one-shot AHD, frame differencing and the decoder; the dialogue variants notebook 03 does
not make), the predictions saved, Tables 2-4 rebuilt from them; results/04_evaluation.json.

    out = run_evaluation(run)          # EvaluationOutputs: heatmaps, dialogue metrics, tables, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tvad import dist
from tvad.evaluate.predict import HeatmapRun, predict_dialogues, predict_heatmaps, save_dialogue_example
from tvad.evaluate.tables import Table, build_tables, write_tables
from tvad.model.backbone import free_memory

RESULTS = "04_evaluation"


@dataclass
class EvaluationOutputs:
    heatmaps: HeatmapRun  # what predict_heatmaps saved, with seconds per part
    dialogue: dict[str, dict]  # {variant: dialogue metrics} of every saved dialogue variant
    example: Path | None  # the dialogue example for the figures (None without a stage-2 model)
    tables: dict[str, Table]  # {"table2": Table, "table3": ..., "table4": ...}
    paths: list[Path]  # the table files written


def run_evaluation(run, force: bool = False, decoder_max_videos: int | None = None,
                   dialogue_variants: Sequence[str] = ("backbone_one_shot", "no_ahd"),
                   progress: bool = True, log=print) -> EvaluationOutputs:
    """Notebook 04 in one call: heatmap predictions, dialogue predictions and the dialogue example
    (each kept when it exists, unless `force`), then the tables from the saved files."""
    # one backbone in memory at a time: each step loads its own and drops it before the next loads
    hm = predict_heatmaps(run, force=force, decoder_max_videos=decoder_max_videos, progress=progress, log=log)
    free_memory()
    dm = predict_dialogues(run, force=force, variants=dialogue_variants, progress=progress, log=log)
    free_memory()
    example = save_dialogue_example(run, force=force)
    free_memory()
    tables = build_tables(run.dir, run.config)
    paths = write_tables(run.dir, tables) if dist.is_main() else []  # rank 0 writes under `accelerate launch`
    dist.barrier()
    answers = {f"{v}.test.{k}": m[k] for v, m in dm.items()  # as notebook 03's <model>.<split>.<metric>
               for k in ("answers_cut", "answers_n", "target_category_accuracy", "target_category_accuracy_n") if k in m}
    run.write_results(RESULTS, {**{f"timing.heatmaps.{k}_s": v for k, v in hm.seconds.items()}, **answers})
    return EvaluationOutputs(hm, dm, example, tables, paths)
