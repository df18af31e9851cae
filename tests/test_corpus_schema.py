"""tvad.corpus.schema: the corpus line check and the validating reader."""

from __future__ import annotations

import json

import pytest

from tvad.corpus import SCHEMA, SCHEMA_VERSION, CorpusSchemaError, load_corpus, validate_record


def _rec(**kw):
    r = {"schema": SCHEMA_VERSION, "id": "a/train/c", "phase": "a", "split": "train",
         "clip": {"name": "c", "source_video": "v", "frame_indices": [0, 1], "num_frames": 2},
         "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Is it odd?"},
                      {"role": "assistant", "content": "No."}],
         "turns": [{"type": "yes_no", "kind": "judgement", "references": ["No."], "truth": "no"}],
         "targets": [], "annotator": "oracle"}
    r.update(kw)
    return r


def test_a_valid_record_and_the_documented_keys():
    assert validate_record(_rec()) == []
    assert set(SCHEMA) == set(_rec())


@pytest.mark.parametrize("change, message", [
    (dict(phase="c"), "phase must be"),
    (dict(split="test"), "split must be"),
    (dict(schema="v0"), "is not"),
    (dict(clip={"name": "c", "source_video": "v", "frame_indices": [0], "num_frames": 2}), "num_frames integers"),
    (dict(turns=[{"type": "yes_no", "kind": "judgement", "references": ["Yes."], "truth": "no"}]), "differs"),
    (dict(turns=[{"type": "yes_no", "kind": "judgement", "references": ["No."]}]), "truth must be"),
    (dict(turns=[{"type": "chat", "kind": "x", "references": ["No."]}]), "type must be one of"),
    (dict(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]), "at least 3"),
])
def test_schema_problems_are_named(change, message):
    errs = validate_record(_rec(**change))
    assert errs and any(message in e for e in errs), errs
    assert validate_record([]) == ["a line must be a JSON object, got list"]
    assert validate_record({"id": "x"})[0] == "missing key 'schema'"


def test_load_corpus_names_file_and_line(tmp_path):
    p = tmp_path / "phase_a.train.jsonl"
    p.write_text(json.dumps(_rec()) + "\n\n" + json.dumps(_rec(id="a/train/d")) + "\n")
    assert [r["id"] for r in load_corpus(p)] == ["a/train/c", "a/train/d"]
    p.write_text(json.dumps(_rec()) + "\n" + json.dumps(_rec()) + "\n")
    with pytest.raises(CorpusSchemaError, match=r"jsonl:2: duplicate id"):
        load_corpus(p)
    with pytest.raises(CorpusSchemaError, match="no such corpus file"):
        load_corpus(tmp_path / "none.jsonl")
