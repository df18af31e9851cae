"""Notebook 01's step policy (tvad.steps.dataset): which splits it loads, the clip index cached in the
run dir (reused, redone with force), the validation rule, and the results-key contract."""

from __future__ import annotations

import json

import pytest

from tvad.data import clips, load_split
from tvad.run import open_run
from tvad.steps.dataset import CLIP_INDEX, dataset_splits, partition

SMALL = {"pretrain": 0, "train": 3, "validation": 2, "test": 0, "test_seen": 0}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("steps")
    run = open_run(d / "run", "cpu", {"data.root": str(d / "data"), "data.num_videos": json.dumps(SMALL)})
    data = {s: load_split(run.config.data, s, root=run.config.data.root, seed=0) for s in ("train", "validation")}
    return run, data


def test_splits_of_each_dataset():
    from tvad.config import preset

    assert "test_seen" in dataset_splits(preset("cpu")) and "pretrain" in dataset_splits(preset("cpu"))
    assert dataset_splits(preset("paper")) == ("train", "validation", "test")  # UBnormal's official splits


def test_clip_index_is_written_reused_and_redone_with_force(small_run):
    run, data = small_run
    first = partition(run, data)
    index = run.dir / CLIP_INDEX
    assert index.exists() and clips.read_index(index) == first
    # the synthetic set keeps its own validation videos (no random hold-out of train sources)
    assert {c.video_split for c in first if c.split == "validation"} == {"validation"}
    assert {c.video_split for c in first if c.split == "train"} == {"train"}
    kept = first[:1]
    clips.write_index(kept, index)  # a later notebook run reads the index, it does not recompute
    assert partition(run, data) == kept
    assert partition(run, data, force=True) == first and clips.read_index(index) == first


def test_corpus_is_built_by_the_configured_annotator(small_run, tmp_path):
    """`build_corpus` asks the annotator of the `corpus` section: the oracle by default; with
    `corpus.annotator=http` the configured endpoint (down here: every frame a counted failure)."""
    import socket

    from tvad.config import ConfigError
    from tvad.run import Run
    from tvad.steps.dataset import build_corpus

    run, data = small_run
    assert build_corpus(Run(tmp_path / "oracle", run.config), data).annotator == "oracle"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = run.config.override({"corpus.annotator": "http", "corpus.endpoint": f"http://127.0.0.1:{port}/v1",
                               "corpus.model": "served", "corpus.api_key_env": "null", "corpus.max_retries": 0,
                               "corpus.timeout": 0.5})
    card = build_corpus(Run(tmp_path / "http", cfg), data)
    assert card.annotator == "http:served" and card.extraction["full"]["ok"] == 0
    assert card.extraction["full"]["request_failed"] == sum(v.num_frames for s in ("train", "validation")
                                                            for v in data[s])
    with pytest.raises(ConfigError, match="corpus.annotator=http needs corpus.endpoint"):
        build_corpus(Run(tmp_path / "bad", run.config.override({"corpus.annotator": "http"})), data)
