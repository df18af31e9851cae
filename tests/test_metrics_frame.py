"""tvad.metrics frame-level AUCs: agreement with scikit-learn and the UBnormal conventions."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tvad.metrics import macro_auc, micro_auc


def random_videos(seed, n_videos=6, single_class=True):
    """Per video (T,) scores in [0, 1] and 0/1 labels; some videos single-class."""
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for v in range(n_videos):
        t = int(rng.integers(5, 40))
        y = (rng.random(t) < 0.3).astype(int)
        if single_class and v % 3 == 0:
            y[:] = 0
        elif y.min() == y.max():
            y[0], y[-1] = 0, 1
        scores.append(np.clip(0.4 * y + rng.random(t) * 0.8, 0, 1))
        labels.append(y)
    return scores, labels


def smooth_by_hand(s, sigma):
    """Gaussian smoothing with zeros beyond the ends, written out (scipy's kernel: radius
    int(4 sigma + 0.5), weights exp(-x^2 / 2 sigma^2) normalised to sum 1)."""
    r = int(4 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    w = np.exp(-0.5 * x**2 / sigma**2)
    w /= w.sum()
    return np.convolve(np.concatenate([np.zeros(r), s, np.zeros(r)]), w, mode="valid")


@pytest.mark.parametrize("seed", range(4))
def test_micro_equals_sklearn_on_pooled_frames(seed):
    scores, labels = random_videos(seed)
    expected = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert micro_auc(scores, labels) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_macro_equals_mean_of_sklearn_per_video(seed):
    scores, labels = random_videos(seed)
    skip = np.mean([roc_auc_score(y, s) for s, y in zip(scores, labels) if y.min() != y.max()])
    pad = np.mean([roc_auc_score(np.r_[0, y, 1], np.r_[0.0, s, 1.0]) for s, y in zip(scores, labels)])
    assert macro_auc(scores, labels, single_class="skip") == pytest.approx(skip, abs=1e-12)
    assert macro_auc(scores, labels) == pytest.approx(pad, abs=1e-12)
    assert macro_auc(scores, labels) != pytest.approx(skip)  # the padding changes the number


def test_dicts_are_matched_by_key_not_order():
    scores, labels = random_videos(7)
    s = {f"v{i}": x for i, x in enumerate(scores)}
    y = {f"v{i}": x for i, x in reversed(list(enumerate(labels)))}
    assert micro_auc(s, y) == micro_auc(scores, labels)
    assert macro_auc(s, y, sigma=2, minmax=True) == macro_auc(scores, labels, sigma=2, minmax=True)


def test_padding_by_hand():
    # All-normal video with score 1: padded scores [0, 1, 1], labels [0, 0, 1]. The positive
    # (1) beats the padding negative (0) and ties the real frame (1): AUC = (1 + 0.5) / 2.
    assert macro_auc([[1.0]], [[0]]) == 0.75
    # A perfectly separated video: padded AUC 1. Mean with the first: 0.875. "skip" drops it.
    scores, labels = [[1.0], [0.2, 0.8]], [[0], [0, 1]]
    assert macro_auc(scores, labels) == 0.875
    assert macro_auc(scores, labels, single_class="skip") == 1.0


def test_smoothing_pads_with_zeros():
    # Constant scores: with zeros beyond the ends the middle frame ends up highest.
    scores, labels = [np.ones(5)], [np.array([0, 0, 1, 0, 0])]
    assert micro_auc(scores, labels) == 0.5
    assert micro_auc(scores, labels, sigma=1) == 1.0


@pytest.mark.parametrize("sigma", [0.7, 3.0])
def test_smoothing_is_per_video_gaussian(sigma):
    scores, labels = random_videos(3, single_class=False)
    smoothed = [smooth_by_hand(s, sigma) for s in scores]
    expected = roc_auc_score(np.concatenate(labels), np.concatenate(smoothed))
    assert micro_auc(scores, labels, sigma=sigma) == pytest.approx(expected, abs=1e-12)
    # Per-video smoothing differs from smoothing the pooled sequence.
    pooled = smooth_by_hand(np.concatenate(scores), sigma)
    assert expected != pytest.approx(roc_auc_score(np.concatenate(labels), pooled))


def test_minmax_is_per_video_and_after_smoothing():
    # Raw pooled: negatives 10, 0; positives 11, 1 -> 3 of 4 pairs ordered. Per-video min-max
    # maps both videos to [0, 1] -> 1.
    scores, labels = [[10.0, 11.0], [0.0, 1.0]], [[0, 1], [0, 1]]
    assert micro_auc(scores, labels) == 0.75
    assert micro_auc(scores, labels, minmax=True) == 1.0
    s, y = random_videos(5, single_class=False)
    expected = []
    for x in s:
        x = smooth_by_hand(x * 7 + 3, 2.0)
        expected.append((x - x.min()) / (x.max() - x.min()))
    got = macro_auc([x * 7 + 3 for x in s], y, sigma=2.0, minmax=True)
    want = np.mean([roc_auc_score(np.r_[0, b, 1], np.r_[0.0, a, 1.0]) for a, b in zip(expected, y)])
    assert got == pytest.approx(want, abs=1e-12)


def test_minmax_constant_video_becomes_zeros():
    # Constant video -> zeros: with the padding its normal frames tie the leading 0.
    assert macro_auc([[0.7, 0.7]], [[0, 0]], minmax=True) == macro_auc([[0.0, 0.0]], [[0, 0]])


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([[0.1, 0.2]], [[0, 1], [0, 1]], "mismatched video counts"),
        ({"a": [0.1, 0.2]}, {"b": [0, 1]}, "keys"),
        ({"a": [0.1, 0.2]}, [[0, 1]], "all be dicts or all be sequences"),
        ([[0.1, float("nan")]], [[0, 1]], "video 0, frame 1"),
        ([[0.1, 0.2, 0.3]], [[0, 1]], "video 0: 3 scores but 2 labels"),
        ([[0.1, 0.2]], [[0, 2]], "video 0, frame 1: label 2"),
        ([], [], "no videos"),
        ([[0.1], []], [[0], []], "video 1"),
        ([[0.1, 0.2]], [[0, 0]], "both normal and anomalous"),
    ],
)
def test_bad_input_micro(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        micro_auc(scores, labels)


def test_bad_options():
    with pytest.raises(ValueError, match="single class"):
        macro_auc([[0.1, 0.2]], [[0, 0]], single_class="skip")
    with pytest.raises(ValueError, match="single_class"):
        macro_auc([[0.1, 0.2]], [[0, 1]], single_class="drop")
    with pytest.raises(ValueError, match="sigma"):
        micro_auc([[0.1, 0.2]], [[0, 1]], sigma=0)
