"""Evaluation metrics for T-VAD (numpy / scipy / scikit-learn / sacrebleu only).

Per-video inputs are lists (matched by position) or dicts (matched by key). Results are
fractions in [0, 1], except BLEU (0-100, as papers print it).

* frame level: :func:`micro_auc`, :func:`macro_auc`
* region / track level: :func:`rbdc_tbdc`, :func:`operating_point`, with detections from
  :func:`regions_from_heatmaps` and GT tracks from :func:`tracks_from_masks` /
  :func:`link_regions`
* text: :func:`bleu4`, :func:`yes_no_accuracy`, :func:`target_category_accuracy`, :func:`answer_cut`,
  and all over dialogue turns: :func:`dialogue_metrics`
"""

from tvad.metrics.frame import macro_auc, micro_auc
from tvad.metrics.regions import (
    link_regions,
    operating_point,
    rbdc_tbdc,
    regions_from_heatmaps,
    tracks_from_masks,
)
from tvad.metrics.text import (
    CATEGORY_WORDS,
    answer_cut,
    bleu4,
    categories_named,
    dialogue_metrics,
    target_category_accuracy,
    yes_no_accuracy,
)

__all__ = [
    "micro_auc",
    "macro_auc",
    "rbdc_tbdc",
    "operating_point",
    "regions_from_heatmaps",
    "tracks_from_masks",
    "link_regions",
    "bleu4",
    "yes_no_accuracy",
    "dialogue_metrics",
    "target_category_accuracy",
    "categories_named",
    "answer_cut",
    "CATEGORY_WORDS",
]
