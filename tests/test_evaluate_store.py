"""The prediction store: bad input refused with the file or name, stale dialogue predictions found."""

import math

import numpy as np
import pytest

from tvad import evaluate as ev


def test_bad_inputs(tmp_path):
    with pytest.raises(ev.EvalError, match="letters"):
        ev.save_heatmap_predictions(tmp_path, "../x", "ahd", {}, {})
    with pytest.raises(ev.EvalError, match="non-finite"):
        ev.save_heatmap_predictions(tmp_path, "test", "ahd", {"a": [0.1, math.nan]}, {"a": np.zeros((0, 6))})
    with pytest.raises(ev.EvalError, match="no such"):
        ev.load_heatmap_gt(tmp_path, "test")
    with pytest.raises(ev.EvalError, match="expected"):
        ev.scores_and_regions({"a": np.zeros((3, 4))})


def test_dialogue_prediction_sources_go_stale_when_a_checkpoint_is_rewritten(tmp_path):
    import os

    from tvad.evaluate.store import _read_source, _source, _source_path

    ck = tmp_path / "stage2" / "rae" / "phase_b" / "final"
    ck.mkdir(parents=True)
    (ck / "tvad.json").write_text("{}")
    (ck / "model.safetensors").write_bytes(b"a" * 10)
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("{}\n")
    a = _source([ck, test_file])
    assert a == _source([ck, test_file])  # stable
    st = (ck / "model.safetensors").stat()
    os.utime(ck / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # retrained: rewritten
    assert _source([ck, test_file]) != a
    assert _source([ck, tmp_path / "missing"]) is None
    assert _read_source(tmp_path, "no_ahd", 0) is None  # predictions of an older version: no sidecar = stale
    p = _source_path(tmp_path, "no_ahd", 0)
    p.parent.mkdir(parents=True)
    p.write_text(a)
    assert _read_source(tmp_path, "no_ahd", 0) == a
