"""Evaluation: models run once on held-out data, their predictions saved, the paper's tables and
figures recomputed from the saved files.

    store      the prediction store under <run_dir>/predictions/ (numpy only)
    tables     Tables 2-4 and the ROC / detection curves from the store (`tvad eval`)
    predict    notebook 04's model runs that fill the store
    dialogues  answers to held-out dialogues, their metrics, the judgement-on-heatmap check
    figures    notebook 05: every figure from the store

    from tvad import evaluate as ev
    ev.save_heatmap_predictions(run_dir, "test", "ahd", *ev.scores_and_regions(heat), seed=0)
    tables = ev.build_tables(run_dir)          # {"table2": Table, "table3": ..., "table4": ...}
    ev.write_tables(run_dir, tables)

Importing `tvad.evaluate` brings the store and the tables (numpy, scikit-learn); `predict`,
`dialogues` and `figures` load torch, transformers or matplotlib and are imported by name.
"""

from tvad.evaluate.store import (DIALOGUE_VARIANTS, HEATMAP_METHODS, SPLIT_LABELS, EvalError,  # noqa: F401
                                 GroundTruth, dialogue_variants, heatmap_methods, heatmap_splits,
                                 load_dialogue_example, load_dialogue_predictions, load_examples, load_heatmap_gt,
                                 load_heatmap_predictions, load_parameter_counts, save_dialogue_predictions,
                                 save_example, save_heatmap_gt, save_heatmap_predictions, save_parameter_counts,
                                 scores_and_regions, training_histories)
from tvad.evaluate.tables import (ABLATIONS, PAPER, Cell, Table, build_tables, detection_curves,  # noqa: F401
                                  heatmap_metrics, main_eval, roc_curve, table2, table3, table4, table_results,
                                  write_tables)
