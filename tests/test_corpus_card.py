"""tvad.corpus.card: the card of a build from its rows and extraction statistics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tvad.corpus.card import make_card
from tvad.corpus.extraction import ExtractStats


def _row(turns):
    return {"turns": [{"type": t, "kind": k, "references": [r], **({"truth": tr} if tr else {})}
                      for t, k, r, tr in turns]}


def test_make_card_counts_and_markdown():
    rows = {("a", "train"): [_row([("scene", "scene", "one two three", None), ("yes_no", "verify_motion", "Yes.", "yes")])],
            ("a", "val"): [],
            ("b", "train"): [_row([("yes_no", "judgement", "No.", "no")])], ("b", "val"): []}
    vids = {"train": [SimpleNamespace(name="c1", num_frames=2, size=(4, 4), meta={"source_video": "v1"})],
            "val": []}
    stats = {"full": ExtractStats(asked=2, ok=2, instances=3), "focus": ExtractStats()}
    files = {"phase_a.train.jsonl": {"dialogues": 1, "turns": 2}}
    card = make_card(Path("/c"), "oracle", files, vids, {"test": 3}, rows, stats, 2, 1, 0, 1.234)
    assert card.turn_types == {"a": {"scene": 1, "yes_no": 1}, "b": {"yes_no": 1}}
    assert card.yes_no == {"a": {"yes": 1}, "b": {"no": 1}} and card.source_videos == {"train": 1, "val": 0}
    assert card.lengths["a"]["scene"]["mean_words"] == 3.0 and card.seconds == 1.23
    assert card.extraction["full"]["asked"] == 2 and card.targets["anomaly"] == 1
    md = card.to_markdown()
    assert "| phase_a.train.jsonl | 1 | 2 |" in md and "test (3 clips)" in md and "## Phase B" in md
    assert card.to_dict()["schema"] == "tvad.corpus/v1"
