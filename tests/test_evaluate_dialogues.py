"""Dialogue evaluation: the judgement scores, with and without the heatmap, and their AUROC."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from stage2_fixtures import ARRAYS, CFG, LAYERS, TRAIN, VAL, _changed, _MaskedVideo, _model, _sd, _store  # noqa: F401

from tvad.evaluate.dialogues import judgement_auroc, judgement_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("use_rae", [True, False], ids=["rae", "no-rae"])
def test_judgement_scores_and_the_zero_heatmap_check(use_rae):
    m = _model(use_rae=use_rae)
    m.set_trainable(False)
    store = _store(m)
    sc = judgement_scores(m, TRAIN, store)
    assert [s["id"] for s in sc] == [r["id"] for r in TRAIN]  # one clip-level judgement each
    assert [s["truth"] for s in sc] == ["yes", "no", "yes", "no"] and all(0 < s["p_yes"] < 1 for s in sc)
    zero = judgement_scores(m, TRAIN, store, zero_heatmaps=True)
    moved = [abs(a["p_yes"] - b["p_yes"]) for a, b in zip(sc, zero)]
    if use_rae:  # the heatmap reaches the answer through the RAE prompts ...
        assert max(moved) > 1e-6
    else:  # ... and only through them
        assert max(moved) == 0.0
    assert store.get(TRAIN[0]["clip"]).heat.abs().sum() > 0  # the cached heatmap itself is untouched
    assert judgement_auroc([{"truth": "yes", "p_yes": 0.9}, {"truth": "no", "p_yes": 0.2}]) == 1.0
    assert judgement_auroc([{"truth": "yes", "p_yes": 0.9}]) is None
