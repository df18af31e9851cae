"""tvad.corpus.extraction: the anomaly-focused view (the extraction loop itself runs in
test_corpus_corpora.py and test_corpus_cache.py, on clips)."""

from __future__ import annotations

import numpy as np

from tvad.corpus import focus_image


def test_focus_image_keeps_mask_sharp():
    rng = np.random.default_rng(0)
    img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    mask = np.zeros((40, 50), np.int32)
    mask[10:20, 10:20] = 3
    out = focus_image(img, mask, sigma=3, dilate=0)
    assert np.array_equal(out[10:20, 10:20], img[10:20, 10:20])
    assert out[30:, 30:].std() < img[30:, 30:].std() * 0.6
