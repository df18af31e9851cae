"""Bad-input matrix of tvad.metrics (issue #20, item 8): nonsense heat, thresholds, scores, rows and
parameters are a ValueError saying what is wrong, never a number. Good inputs near the edges still
give numbers."""

from __future__ import annotations

import numpy as np
import pytest

from tvad.metrics import (
    bleu4,
    link_regions,
    macro_auc,
    micro_auc,
    operating_point,
    rbdc_tbdc,
    regions_from_heatmaps,
    tracks_from_masks,
    yes_no_accuracy,
)


def _heat(value=0.0, dtype=np.float64, at=(1, 2, 3)):
    h = np.zeros((3, 6, 6), dtype)
    h[0, 1:3, 1:3] = 0.8
    h[at] = value
    return h


HEAT_CASES = {
    "+inf heat": (lambda: regions_from_heatmaps(_heat(np.inf)),
                  "heatmaps: heat inf in frame 1 at (y=2, x=3); expected finite heat in [0, 1]"),
    "-inf heat": (lambda: regions_from_heatmaps(_heat(-np.inf)),
                  "heatmaps: heat -inf in frame 1 at (y=2, x=3); expected finite heat in [0, 1]"),
    "NaN heat": (lambda: regions_from_heatmaps(_heat(np.nan)),
                 "heatmaps: NaN heat in frame 1 at (y=2, x=3); expected finite heat in [0, 1]"),
    "heat 7.0": (lambda: regions_from_heatmaps(_heat(7.0)),
                 "heatmaps: heat 7.0 in frame 1 at (y=2, x=3); expected finite heat in [0, 1]"),
    "negative heat": (lambda: regions_from_heatmaps(_heat(-0.5, np.float32)),
                      "heatmaps: heat -0.5 in frame 1 at (y=2, x=3); expected finite heat in [0, 1]"),
    "uint8 0-255 heat": (lambda: regions_from_heatmaps((_heat(1.0) * 255).astype(np.uint8)),
                         "heatmaps: expected float heat in [0, 1], got uint8"),
    "int 0/1 heat": (lambda: regions_from_heatmaps(_heat(1.0).astype(np.int64)),
                     "heatmaps: expected float heat in [0, 1], got int64"),
    "NaN threshold": (lambda: regions_from_heatmaps(_heat(), float("nan")),
                      "threshold must be a number in [0, 1], got nan"),
    "threshold 128": (lambda: regions_from_heatmaps(_heat(), 128),
                      "threshold must be a number in [0, 1], got 128"),
    "threshold True": (lambda: regions_from_heatmaps(_heat(), True),
                       "threshold must be a number in [0, 1], got True"),
    "threshold '0.5'": (lambda: regions_from_heatmaps(_heat(), "0.5"),
                        "threshold must be a number in [0, 1], got '0.5'"),
    "2-D heat": (lambda: regions_from_heatmaps(np.zeros((6, 6))),
                 "heatmaps must have shape (T, H, W), got (6, 6)"),
}


Y = [np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0])]
S01 = [np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 0.7, 0.3, 0.1])]

AUC_CASES = {
    "macro pad, scores in [0, 100]": (lambda: macro_auc([s * 100 for s in S01], Y),
                                      "macro_auc(single_class='pad'): video 0 has scores in [10, 90], outside [0, 1] "
                                      "(the padding frames score 0 and 1); pass minmax=True or single_class='skip'"),
    "macro pad, negative scores": (lambda: macro_auc({"a": S01[0] - 1, "b": S01[1]}, {"a": Y[0], "b": Y[1]}),
                                   "macro_auc(single_class='pad'): video 'a' has scores in [-0.9, -0.1], outside"),
    "micro, inf score": (lambda: micro_auc([np.array([0.1, np.inf, 0.2, 0.3]), S01[1]], Y),
                         "video 0, frame 1: score is inf"),
    "macro, NaN score": (lambda: macro_auc([S01[0], np.array([0.1, np.nan, 0.2, 0.3])], Y),
                         "video 1, frame 1: score is nan"),
    "micro, string scores": (lambda: micro_auc([["a", "b", "c", "d"], S01[1]], Y),
                             "video 0: scores are not numeric (could not convert string to float: 'a')"),
    "micro, NaN label": (lambda: micro_auc(S01, [np.array([0, 0, np.nan, 1]), Y[1]]),
                         "video 0, frame 2: label nan is not 0 or 1"),
    "micro, inf sigma": (lambda: micro_auc(S01, Y, sigma=float("inf")),
                         "sigma must be None or a positive number, got inf"),
}


D = [np.array([[0, 1, 1, 4, 4, 0.9], [1, 0, 0, 2, 2, 0.4]])]
G = [np.array([[0, 0, 1, 1, 4, 4], [0, 1, 1, 1, 4, 4]])]


def _det(col, value):
    d = D[0].copy()
    d[0, col] = value
    return [d]


REGION_CASES = {
    "rbdc, inf score": (lambda: rbdc_tbdc(_det(5, np.inf), G, 2),
                        "detections[0] row 0: score is infinite (row = [0.0, 1.0, 1.0, 4.0, 4.0, inf])"),
    "rbdc, NaN score": (lambda: rbdc_tbdc(_det(5, np.nan), G, 2), "detections[0] row 0: score is NaN"),
    "rbdc, inf box": (lambda: rbdc_tbdc(_det(3, np.inf), G, 2), "detections[0] row 0: box coordinate is not finite"),
    "rbdc, NaN frame": (lambda: rbdc_tbdc(_det(0, np.nan), G, 2),
                        "detections[0] row 0: frame index is not an integer"),
    "rbdc, (n, 5) rows": (lambda: rbdc_tbdc([D[0][:, :5]], G, 2),
                          "detections[0]: expected shape (n, 6), got (2, 5)"),
    "rbdc, NaN num_frames": (lambda: rbdc_tbdc(D, G, float("nan")),
                             "num_frames must be a positive integer, got nan"),
    "rbdc, inf num_frames": (lambda: rbdc_tbdc(D, G, float("inf")),
                             "num_frames must be a positive integer, got inf"),
    "rbdc, NaN iou": (lambda: rbdc_tbdc(D, G, 2, iou=float("nan")), "iou must be in (0, 1], got nan"),
    "rbdc, string iou": (lambda: rbdc_tbdc(D, G, 2, iou="0.1"), "iou must be a number, got '0.1'"),
    "rbdc, inf max_fpr": (lambda: rbdc_tbdc(D, G, 2, max_fpr=float("inf")),
                          "max_fpr must be a positive number, got inf"),
    "operating point, NaN GT box": (lambda: operating_point(D, [np.where(np.eye(2, 6, 5) > 0, np.nan, G[0])], 2),
                                    "gt_tracks[0] row 0: box coordinate is not finite"),
    "operating point, NaN hit_ratio": (lambda: operating_point(D, G, 2, hit_ratio=float("nan")),
                                       "hit_ratio must be in (0, 1], got nan"),
    "tracks_from_masks, float masks": (lambda: tracks_from_masks(np.full((2, 3, 3), 0.5)),
                                       "masks must be integer or bool, got dtype float64"),
    "tracks_from_masks, negative id": (lambda: tracks_from_masks(-np.ones((2, 3, 3), np.int8)),
                                       "masks: negative object id -1"),
    "link_regions, uint8 255 mask": (lambda: link_regions(np.full((2, 3, 3), 255, np.uint8)),
                                     "masks_binary must hold only 0/1 (use tracks_from_masks for object ids)"),
    "link_regions, NaN link_iou": (lambda: link_regions(np.zeros((2, 3, 3), bool), link_iou=float("nan")),
                                   "link_iou must be in (0, 1], got nan"),
}


TEXT_CASES = {
    "bleu4, NaN hypothesis": (lambda: bleu4([float("nan")], [["a man"]]),
                              "hypotheses[0]: expected a string, got float"),
    "bleu4, one string for a list": (lambda: bleu4("a man", [["a man"]]),
                                     "'hypotheses' must be a list or dict of per-video values"),
    "bleu4, empty references": (lambda: bleu4(["a man"], [[]]),
                                "references[0]: expected a non-empty list of strings"),
    "yes_no, None answer": (lambda: yes_no_accuracy([None], ["Yes"]),
                            "answers[0]: expected a string, got NoneType"),
    "yes_no, NaN truth": (lambda: yes_no_accuracy(["Yes"], [float("nan")]), "truths[0]: nan is neither Yes nor No"),
    "yes_no, no answers": (lambda: yes_no_accuracy([], []), "no videos given (answers, truths are empty)"),
}

CASES = {**HEAT_CASES, **AUC_CASES, **REGION_CASES, **TEXT_CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_nonsense_is_refused(case):
    fn, want = CASES[case]
    with pytest.raises(ValueError) as e:
        fn()
    first = str(e.value).splitlines()[0]
    assert first.startswith(want), first


def test_edges_still_give_numbers():
    # heat exactly 0 and 1, float16 / float32 heat, threshold 0 and 1, an ulp above 1 (upsampling)
    h = _heat(1.0)
    for dt in (np.float16, np.float32, np.float64):
        assert regions_from_heatmaps(h.astype(dt)).shape == (2, 6)
    assert regions_from_heatmaps(h, 0).shape == (3, 6)  # every pixel foreground: one region a frame
    assert regions_from_heatmaps(h, 1).shape == (1, 6)
    assert regions_from_heatmaps(np.nextafter(h, 2).astype(np.float32), np.float32(0.5)).shape == (2, 6)
    assert regions_from_heatmaps(np.zeros((0, 4, 4))).shape == (0, 6)
    # any real scores: micro AUC, macro AUC skip, macro AUC pad after min-max
    big = [s * 100 - 7 for s in S01]
    assert micro_auc(big, Y) == micro_auc(S01, Y)
    assert macro_auc(big, Y, single_class="skip") == macro_auc(S01, Y, single_class="skip")
    assert macro_auc(big, Y, minmax=True) == macro_auc(S01, Y, minmax=True)
    assert 0 <= macro_auc(S01, Y, sigma=1.0) <= 1  # smoothing keeps [0, 1] scores in [0, 1]
    # -inf / +inf scores are not a ranking: refused above; finite extremes are fine
    assert rbdc_tbdc(_det(5, 1e300), G, 2) == rbdc_tbdc(D, G, 2)
