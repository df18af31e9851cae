"""Frame-level ROC-AUC: micro (all frames pooled) and macro (mean of per-video AUCs).

Conventions follow the UBnormal / Georgescu et al. (TPAMI 2021) evaluation: optional
per-video Gaussian smoothing with ``mode="constant"`` and, for the macro AUC, a padding
frame pair that lets single-class (all-normal) videos count.

Per-video inputs may be given as lists (matched by position) or dicts (matched by key);
``_pair_videos`` implements that rule for the whole of ``tvad.metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import roc_auc_score

__all__ = ["micro_auc", "macro_auc"]

# Slack on "in [0, 1]" checks (heat, padded scores): float32 upsampling / smoothing may overshoot by an ulp.
_UNIT_TOL = 1e-4


def _pair_videos(**inputs: Any) -> list[tuple[Any, tuple[Any, ...]]]:
    """Align per-video inputs given all as sequences (by position) or all as dicts (by key).

    ``_pair_videos(scores=a, labels=b)`` -> ``[(key, (a_k, b_k)), ...]`` in the order of the
    first input; keys are positions for sequences. Raises ``ValueError`` on empty inputs,
    mixed kinds, mismatched counts or mismatched keys.
    """
    names = list(inputs)
    values = list(inputs.values())
    is_map = [isinstance(v, Mapping) for v in values]
    if any(is_map) and not all(is_map):
        kinds = ", ".join(f"{n}={'dict' if m else 'sequence'}" for n, m in zip(names, is_map))
        raise ValueError(f"per-video inputs must all be dicts or all be sequences ({kinds})")
    if all(is_map):
        keys = list(values[0])
        for name, value in zip(names[1:], values[1:]):
            missing = [k for k in keys if k not in value]
            extra = [k for k in value if k not in values[0]]
            if missing or extra:
                raise ValueError(
                    f"video keys of {names[0]!r} and {name!r} differ: "
                    f"missing from {name!r}: {missing[:5]}, extra in {name!r}: {extra[:5]}"
                )
        pairs = [(k, tuple(v[k] for v in values)) for k in keys]
    else:
        for name, value in zip(names, values):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"{name!r} must be a list or dict of per-video values")
        counts = [len(v) for v in values]
        if len(set(counts)) > 1:
            desc = ", ".join(f"{n}: {c}" for n, c in zip(names, counts))
            raise ValueError(f"mismatched video counts ({desc})")
        pairs = [(i, tuple(v[i] for v in values)) for i in range(counts[0])]
    if not pairs:
        raise ValueError(f"no videos given ({', '.join(names)} are empty)")
    return pairs


def _video_scores_labels(key: Any, scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate one video: scores (T,) finite floats, labels (T,) in {0, 1}; T >= 1."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"video {key!r}: scores are not numeric ({e})") from None
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"video {key!r}: scores and labels must be 1-D, got {s.shape} and {y.shape}")
    if s.shape != y.shape:
        raise ValueError(f"video {key!r}: {len(s)} scores but {len(y)} labels")
    if len(s) == 0:
        raise ValueError(f"video {key!r}: no frames")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"video {key!r}, frame {bad[0]}: score is {s[bad[0]].item()}")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise ValueError(f"video {key!r}, frame {bad[0]}: label {y[bad[0]].item()!r} is not 0 or 1")
    return s, y.astype(np.int8)


def _postprocess(s: np.ndarray, sigma: float | None, minmax: bool) -> np.ndarray:
    """(T,) -> (T,): Gaussian smoothing (zero padding beyond the video, as the UBnormal
    script does), then min-max normalisation to [0, 1] (a constant video becomes all 0)."""
    if sigma is not None:
        s = gaussian_filter1d(s, sigma, mode="constant")
    if minmax:
        lo, hi = s.min(), s.max()
        s = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    return s


def _check_sigma(sigma: float | None) -> None:
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be None or a positive number, got {sigma!r}")


def _videos(scores: Any, labels: Any, sigma: float | None, minmax: bool):
    _check_sigma(sigma)
    for key, (s, y) in _pair_videos(scores=scores, labels=labels):
        s, y = _video_scores_labels(key, s, y)
        yield key, _postprocess(s, sigma, minmax), y


def micro_auc(scores: Any, labels: Any, *, sigma: float | None = None, minmax: bool = False) -> float:
    """ROC-AUC over all frames of all videos pooled (the "micro" frame-level AUC).

    Args:
        scores: per video a (T_v,) array of anomaly scores (higher = more anomalous; any
            finite reals: the AUC depends on their order only); a list (matched to ``labels``
            by position) or a dict (matched by key).
        labels: per video a (T_v,) array of 0/1 frame labels (1 = anomalous).
        sigma: if given, each video's scores are smoothed with a 1-D Gaussian of this
            standard deviation, ``mode="constant"`` (zeros beyond the ends).
        minmax: if True, each video's (smoothed) scores are min-max normalised to [0, 1].

    Post-processing is per video, before pooling. Returns a fraction in [0, 1]. Raises
    ``ValueError`` naming the video (and frame) for non-numeric or non-finite scores, labels
    other than 0/1, mismatched lengths.
    """
    pooled = list(_videos(scores, labels, sigma, minmax))
    s = np.concatenate([p[1] for p in pooled])
    y = np.concatenate([p[2] for p in pooled])
    if y.min() == y.max():
        raise ValueError(f"micro AUC needs both normal and anomalous frames; all labels are {y[0]}")
    return float(roc_auc_score(y, s))


def macro_auc(
    scores: Any,
    labels: Any,
    *,
    sigma: float | None = None,
    minmax: bool = False,
    single_class: str = "pad",
) -> float:
    """Mean of per-video ROC-AUCs (the "macro" frame-level AUC).

    Args: as :func:`micro_auc`, plus
        single_class: ``"pad"`` (the official convention): every video gets a leading frame
            (label 0, score 0) and a trailing frame (label 1, score 1), so every video has
            both classes and all-normal videos count. This assumes scores in [0, 1] (use
            ``minmax=True`` or calibrated scores): scores outside [0, 1] (after smoothing and
            min-max) raise ``ValueError``, as the padding frames would not be the extremes
            they are meant to be. ``"skip"``: videos whose frames are all of one class are left
            out of the mean; any real scores.

    Returns a fraction in [0, 1].
    """
    if single_class not in ("pad", "skip"):
        raise ValueError(f"single_class must be 'pad' or 'skip', got {single_class!r}")
    aucs = []
    for key, s, y in _videos(scores, labels, sigma, minmax):
        if single_class == "pad":
            lo, hi = float(s.min()), float(s.max())
            if lo < -_UNIT_TOL or hi > 1 + _UNIT_TOL:
                raise ValueError(
                    f"macro_auc(single_class='pad'): video {key!r} has scores in [{lo:g}, {hi:g}], outside [0, 1] "
                    "(the padding frames score 0 and 1); pass minmax=True or single_class='skip'")
            s = np.concatenate(([0.0], s, [1.0]))
            y = np.concatenate(([0], y, [1]))
        elif y.min() == y.max():
            continue
        aucs.append(roc_auc_score(y, s))
    if not aucs:
        raise ValueError("macro AUC with single_class='skip': every video has a single class")
    return float(np.mean(aucs))
