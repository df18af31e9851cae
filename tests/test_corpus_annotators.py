"""tvad.corpus.annotators: choosing an annotator by name; the prompt and its hash."""

from __future__ import annotations

import pytest

from tvad.corpus.annotators import (FRAME_PROMPT, AnnotatorError, FrameRecord, HTTPAnnotator, Instance,
                                    OracleAnnotator, frame_prompt, make_annotator, prompt_hash)


def test_make_annotator(monkeypatch):
    assert isinstance(make_annotator("oracle"), OracleAnnotator)
    ann = OracleAnnotator()
    assert make_annotator(ann) is ann
    monkeypatch.delenv("TVAD_API_KEY", raising=False)
    a = make_annotator("http", base_url="http://127.0.0.1:1/v1/", model="m", api_key_env=None)
    assert isinstance(a, HTTPAnnotator) and a.base_url == "http://127.0.0.1:1/v1" and a.name == "http:m"
    with pytest.raises(AnnotatorError, match="missing model"):
        make_annotator("http", base_url="x")
    with pytest.raises(AnnotatorError, match="give path"):
        make_annotator("local")
    with pytest.raises(AnnotatorError, match="unknown annotator"):
        make_annotator("gpt")


def test_prompt_and_record_round_trip():
    assert "(80 x 60 pixels)" in frame_prompt(60, 80) and len(prompt_hash()) == 12
    assert prompt_hash(FRAME_PROMPT + " ") != prompt_hash()
    rec = FrameRecord("v", 3, "oracle", prompt_hash(), instances=[Instance("car", {"color": "red"}, (1, 2, 3, 4), 7)])
    back = FrameRecord.from_dict(rec.to_dict())
    assert back.key == rec.key == f"v|3|oracle|{prompt_hash()}|full" and back.instances[0].box == (1.0, 2.0, 3.0, 4.0)
