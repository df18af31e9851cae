"""Executes the notebook chain on the CPU default through papermill (the real runner), once per
session, then checks what each notebook left in the run dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvad.pipeline import chain, run_pipeline

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="session")
def chain_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("chain") / "cpu"
    # the dataset goes inside the run dir so the test never touches the user's data/
    run_pipeline("cpu", run_dir, overrides={"data.root": str(run_dir / "dataset")}, progress=False)
    return run_dir


def _results(run_dir: Path, stem: str) -> dict:
    p = run_dir / "results" / f"{stem}.json"
    assert p.exists(), f"{stem} wrote no results"
    return json.loads(p.read_text())


def test_every_notebook_executed(chain_run):
    for step in chain():
        out = chain_run / "notebooks" / step.path.name
        assert out.exists(), f"{step.path.name} not executed"
        nb = json.loads(out.read_text())
        errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors
    assert (chain_run / "config.yaml").exists() and (chain_run / "run.json").exists()


def test_01_real_clips(chain_run, shared_clips):
    """The real ShanghaiTech clips (skipped, naming the folder, in a clone without ../shared)."""
    r = _results(chain_run, "01_dataset_construction")
    assert r["real.num_clips"] == 3
    assert r["real.frames"] == 24 and r["real.height"] == 476 and r["real.width"] == 868
    assert r["corpus.real_trajectory_bleu4"] > 10


def test_01_dataset_construction(chain_run, request):
    r = _results(chain_run, "01_dataset_construction")
    if r["real.num_clips"] == 0:  # only where the clips are absent, and then no key measured on them
        with pytest.raises(pytest.skip.Exception):
            request.getfixturevalue("shared_clips")
        assert "corpus.real_trajectory_bleu4" not in r and "real.frames" not in r
    for split in ("pretrain", "train", "validation", "test", "test_seen"):
        assert r[f"data.{split}.videos"] > 0 and 0 < r[f"data.{split}.abnormal_frame_ratio"] < 1
    # the clip protocol: every split cut into clips, the corpus built from the training and validation
    # clips (one dialogue of each phase per clip), each clip 8 frames of its 24-frame source video
    assert r["clips.count"] == sum(r[f"clips.{s}.clips"] for s in ("train", "validation", "test", "test_seen"))
    assert r["clips.train.clips"] == 3 * r["data.train.videos"] and r["clips.skipped_videos"] == 0
    assert r["corpus.phase_b.train.dialogues"] == r["clips.train.clips"]
    assert r["corpus.phase_b.val.dialogues"] == r["clips.validation.clips"]
    for name in ("phase_a.train", "phase_a.val", "phase_b.train", "phase_b.val"):
        assert r[f"corpus.{name}.dialogues"] > 0
        assert (chain_run / "corpus" / f"{name}.jsonl").exists()
    from tvad.corpus import load_corpus
    from tvad.data import clips

    train = {rec["clip"]["source_video"] for rec in load_corpus(chain_run / "corpus" / "phase_a.train.jsonl")}
    val = {rec["clip"]["source_video"] for rec in load_corpus(chain_run / "corpus" / "phase_a.val.jsonl")}
    assert train and val and not train & val  # no source-video leakage
    clips.check_no_leakage(clips.read_index(chain_run / "clips.jsonl"))
    assert (chain_run / "figures" / "dataset_statistics.png").exists()


def test_02_ahd_training(chain_run):
    r = _results(chain_run, "02_ahd_training")
    for method in ("ahd", "framediff"):
        for split in ("val", "test_seen", "test"):
            for metric in ("micro_auc", "macro_auc", "rbdc", "tbdc"):
                assert 0 <= r[f"{method}.{split}.{metric}"] <= 1, f"{method}.{split}.{metric}"
    assert any(k.startswith("ahd.test.per_type.") and k.endswith(".micro_auc") for k in r)
    # the trained AHD on the pretrained tiny backbone: well above chance and above frame differencing
    # on the training types' new videos (measured 0.876 against 0.605; issue target 0.85)
    assert r["ahd.test_seen.micro_auc"] > 0.8
    assert r["ahd.test_seen.micro_auc"] > r["framediff.test_seen.micro_auc"]
    assert r["ahd.test_seen.rbdc"] > r["framediff.test_seen.rbdc"]


def test_03_rae_sft(chain_run):
    from tvad.corpus import load_corpus

    r = _results(chain_run, "03_rae_sft")
    assert "rae_oracle.test.yes_no_accuracy" not in r  # the upper bound is off in the default chain
    for variant in ("rae", "no_rae", "backbone"):
        for split in ("test", "val", "test_seen"):  # the contract's test, and the other held-out dialogues
            for metric in ("yes_no_accuracy", "bleu4_target", "bleu4_trajectory"):
                v = r[f"{variant}.{split}.{metric}"]
                assert 0 <= v <= (1 if metric == "yes_no_accuracy" else 100)
            # whole answers: the cut ones (hit the safety cap, or end mid-sentence) are counted
            assert 0 <= r[f"{variant}.{split}.answers_cut"] <= r[f"{variant}.{split}.answers_n"] > 0
    for split in ("train", "test", "val", "test_seen"):  # does the judgement rest on the heatmap?
        for key in ("rae.{}.judgement_auroc", "rae.{}.judgement_auroc_zero_heatmaps", "no_rae.{}.judgement_auroc",
                    "backbone.{}.judgement_auroc"):
            assert 0 <= r[key.format(split)] <= 1, key.format(split)
    # The cpu recipe makes the judgement read the heatmap: on the training clips zeroing it costs AUROC
    # (measured 0.88 -> 0.69, seed 1: 0.87 -> 0.66; with the paper's plain token mean 0.68 and 0.69, the
    # same as with zero heatmaps).
    assert r["rae.train.judgement_auroc"] > r["rae.train.judgement_auroc_zero_heatmaps"] + 0.05
    seen = load_corpus(chain_run / "stage2" / "test_seen_corpus" / "phase_b.val.jsonl")
    assert r["stage2.test_seen_dialogues"] == len(seen) > 0
    assert {rec["clip"]["name"] for rec in seen}.isdisjoint(
        rec["clip"]["name"] for rec in load_corpus(chain_run / "corpus" / "phase_b.train.jsonl"))
    assert (chain_run / "stage2" / "rae" / "phase_b" / "final" / "tvad.json").exists()


def test_04_evaluation(chain_run):
    r = _results(chain_run, "04_evaluation")
    for split in ("val", "test_seen", "test"):
        for method in ("ahd", "ahd_one_shot", "framediff", "decoder"):
            assert 0 <= r[f"table2.{split}.{method}.micro_auc.mean"] <= 1, (split, method)
    for v in ("rae", "no_rae", "backbone_zero_shot", "backbone_one_shot"):
        assert r[f"table3.{v}.yes_no_accuracy.n"] >= 1, v
    assert r["table4.t_vad.parameters"].endswith("M")
    assert 0 <= r["rae.test.answers_cut"] <= r["rae.test.answers_n"] > 0  # whole answers, as in 03's results
    assert "table3.rae.target_category_accuracy.mean" in r and "table3.rae.answers_cut.mean" in r
    for name in ("table2", "table3", "table4"):
        for ext in ("json", "csv", "md", "tex"):
            assert (chain_run / "tables" / f"{name}.{ext}").exists()
    # the tables are a function of the saved predictions: `tvad eval` gives the same numbers
    from tvad.cli import main

    assert main(["eval", "--run-dir", str(chain_run), "--quiet"]) == 0
    again = _results(chain_run, "04_evaluation")
    assert {k: v for k, v in again.items() if k.startswith("table")} == {k: v for k, v in r.items()
                                                                          if k.startswith("table")}


def test_05_figures(chain_run):
    r = _results(chain_run, "05_figures")
    names = ("heatmap_grid", "trajectory", "dialogue", "roc", "rbdc_curves", "training_curves")
    assert r["figures.count"] == len(names)
    for n in names:
        for ext in ("png", "pdf"):
            assert (chain_run / "figures" / f"{n}.{ext}").stat().st_size > 1000, n


def test_00_quickstart(chain_run):
    """The workshop notebook (not in the chain) on the chain's trained run and a real clip."""
    import papermill as pm

    from tvad.pipeline import NOTEBOOK_DIR
    from tvad.io import REPO_ROOT

    out = chain_run / "notebooks" / "00_quickstart.ipynb"
    pm.execute_notebook(str(NOTEBOOK_DIR / "00_quickstart.ipynb"), str(out), cwd=str(REPO_ROOT),
                        parameters={"preset": "cpu", "run_dir": str(chain_run),
                                    "overrides": {"data.root": str(chain_run / "dataset")}, "force": False},
                        progress_bar=False)
    nb = json.loads(out.read_text())
    text = "".join("".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "")
                   for c in nb["cells"] for o in c.get("outputs", []))
    assert "max score" in text and text.count("T-VAD:") >= 3
