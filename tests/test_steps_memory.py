"""One backbone in memory at a time: notebook 03's `run_stage2` and notebook 04's `predict_dialogues`
drop every reference to a variant's model (the clip store's, the trainer's cycles) before the next
loads. The orchestration runs for real on tiny models; its heavy parts (corpora, training, answers)
are stand-ins, and each load checks, after a garbage collection, that no earlier model is alive."""

import gc
import os
import weakref
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from tvad.config import RAEConfig, preset
from tvad.evaluate import predict
from tvad.model.tiny import build_tiny
from tvad.model.tvad import TVAD, TVADError
from tvad.steps import sft

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _record(i: int, split: str) -> dict:
    return {"id": f"b/{split}/{i}", "clip": {"name": f"{split}{i}", "fps": 8.0, "label": i % 2},
            "messages": [{"role": "system", "content": "You watch a fixed camera."},
                         {"role": "user", "content": "Is there any anomaly in this video?"},
                         {"role": "assistant", "content": "Yes." if i % 2 else "No."}]}


class Loads:
    """A stand-in for `load` / `build_model` returning tiny T-VADs; `alive` records how many models it
    made before are still referenced when each new one is asked for."""

    def __init__(self):
        self.refs: list[weakref.ref] = []
        self.alive: list[int] = []

    def __call__(self, *a, use_rae: bool = True, **k) -> TVAD:
        gc.collect()  # what from_pretrained does first: only real references keep a model alive
        self.alive.append(sum(r() is not None for r in self.refs))
        bb = build_tiny(seed=0, max_pixels=112 * 112)
        m = TVAD.build(bb, None, {}, RAEConfig(channels=8), use_rae=use_rae, seed=0, meta={"fps": 8.0})
        self.refs.append(weakref.ref(m))
        return m

    def live(self) -> int:
        gc.collect()
        return sum(r() is not None for r in self.refs)


def _trainer(model, phase, *a, **k):
    """A stand-in for train_phase that, like transformers' Trainer, leaves a reference cycle holding the model."""
    trainer = {"model": model}
    trainer["self"] = trainer
    return SimpleNamespace(history=[{"eval_loss": 1.0}], steps=1, seconds=0.0)


def test_run_stage2_holds_one_model_at_a_time(tmp_path, monkeypatch):
    loads = Loads()
    recs = {k: [_record(i, k.split(".")[1]) for i in range(2)] for k in ("a.train", "a.val", "b.train", "b.val")}
    test = [_record(i, "test") for i in range(2)]
    (tmp_path / "stage2" / "no_rae" / "phase_b" / "final").mkdir(parents=True)
    (tmp_path / "stage2" / "no_rae" / "phase_b" / "final" / "tvad.json").write_text("{}")  # reloaded: `load`
    for name, value in {
        "corpus_records": lambda run: recs, "clip_split": lambda run, split: [],
        "heldout_clips": lambda run: {"test": []},
        "test_records": lambda *a, **k: test, "find_checkpoint": lambda d: d, "ClipResolver": lambda videos: object(),
        "dialogue_budgets": lambda *a, **k: {}, "check_clips_sharded": lambda *a, **k: None,
        "truncated_dialogues": lambda *a, **k: [], "train_phase": _trainer, "load": loads, "build_model": loads,
        "evaluate_model": lambda model, rs, clips, *a, **k: ({"yes_no_accuracy": 0.5}, []),
        "judgement_scores": lambda *a, **k: [],
    }.items():
        monkeypatch.setattr(sft, name, value)
    run = SimpleNamespace(config=preset("cpu"), dir=tmp_path, write_results=lambda name, r: None)
    out = sft.run_stage2(run, progress=False, log=lambda s: None)
    # rae (built), no_rae (loaded), rae_oracle (built, the cpu preset's stage2.oracle), backbone (built)
    assert len(loads.alive) == 3 + bool(run.config.stage2.oracle)
    assert not any(loads.alive), loads.alive  # no earlier variant's model alive at any load
    assert out.clips.model is None and loads.live() == 0  # what notebook 03 keeps holds no model
    with pytest.raises(TVADError, match="holds no model"):
        out.clips.get(test[0]["clip"])
    m = loads()  # the notebook's cell 9: tvad.load(...) beside the outputs of run_stage2
    assert loads.alive[-1] == 0
    out.clips.model = m


def test_predict_dialogues_holds_one_model_at_a_time(tmp_path, monkeypatch):
    loads = Loads()
    (tmp_path / "stage2" / "rae" / "phase_b" / "final").mkdir(parents=True)
    (tmp_path / "stage2" / "rae" / "phase_b" / "final" / "tvad.json").write_text("{}")
    (tmp_path / "stage2" / "test_corpus").mkdir(parents=True)
    (tmp_path / "stage2" / "test_corpus" / "phase_b.val.jsonl").write_text("")
    recs = [_record(i, "test") for i in range(2)]
    for name, value in {
        "import_stage2_predictions": lambda run: {}, "find_checkpoint": lambda d: d, "load": loads,
        "build_model": loads, "load_records": lambda f: recs, "corpus_records": lambda run: {"b.train": recs},
        "all_clips": lambda run: [], "ClipResolver": lambda videos: None, "clip_budgets": lambda run: {},
        "evaluate_model": lambda model, rs, clips, *a, **k: ({}, []), "save_dialogue_predictions": lambda *a, **k: None,
        "dialogue_variants": lambda d: [],
    }.items():
        monkeypatch.setattr(predict, name, value)
    run = SimpleNamespace(config=preset("cpu"), dir=tmp_path)
    predict.predict_dialogues(run, force=True, variants=("no_ahd", "backbone_one_shot"), progress=False,
                              log=lambda s: None)
    assert loads.alive == [0, 0], loads.alive
    assert loads.live() == 0
