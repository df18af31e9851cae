"""`tvad study` (tvad/study.py): aggregation of results files written in the run layout, the docs
section, bad input, a failing seed, and a real two-seed study of notebook 01 that resumes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tvad.cli import main
from tvad.config import preset
from tvad.pipeline import PipelineError
from tvad.run import Run
from tvad.study import (
    BEGIN,
    DONE,
    END,
    StudyError,
    aggregate,
    check_docs,
    is_timing_key,
    make_spec,
    run_study,
    seed_state,
    write_docs,
    write_study,
)

# per seed: notebook 02's and 03's keys as the steps write them (tvad/steps/ahd.py, tvad/steps/sft.py)
AHD = {"test": (0.66, 0.70, 0.61), "test_seen": (0.88, 0.86, 0.90)}  # micro AUC per seed


def _write_seed(spec, seed: int, i: int) -> None:
    """Results of seed `seed` (the i-th) in its run dir, through `Run.write_results` as the notebooks do."""
    run = Run(spec.seed_dir(seed), preset("cpu"))
    r2 = {"stage1.backbone": "tiny-qwen", "stage1.best_epoch": 20, "stage1.train_clips": 72,
          "timing.epoch_cached_s": 3.0 + i, "timing.cache_speedup": 7.0 + i}
    for split, aucs in AHD.items():
        r2[f"ahd.{split}.micro_auc"] = aucs[i]
        r2[f"ahd.{split}.rbdc"] = 0.1 * (i + 1)
        r2[f"ahd.{split}.tbdc"] = 0.2 + 0.05 * i
        r2[f"framediff.{split}.micro_auc"] = 0.661  # no seed in frame differencing
        r2[f"framediff.{split}.rbdc"] = 0.316
        r2[f"framediff.{split}.tbdc"] = 0.497
    run.write_results("02_ahd_training", r2)
    r3 = {"timing.total_s": 470.0 + i, "timing.rae.train_s": 147.0, "stage2.test_dialogues": 36}
    for m, base in (("rae", 0.55), ("rae_oracle", 0.74), ("no_rae", 0.5), ("backbone", 0.41)):
        r3.update({f"{m}.test.yes_no_accuracy": base + 0.05 * i, f"{m}.test.bleu4_target": 30.0 + i,
                   f"{m}.test.bleu4_trajectory": 40.0 - 2 * i, f"{m}.test.yes_no_n": 54,
                   f"{m}.test.bleu4_target_n": 18, f"{m}.val.yes_no_accuracy": 0.5})
    r3["rae.test.judgement_auroc"] = float("nan") if i == 1 else 0.6 + 0.1 * i  # undefined in one seed
    r3["rae.test.answers_cut"] = 2 + i  # a per-answer key another change adds: picked up when present
    run.write_results("03_rae_sft", r3)
    run.write_results("01_dataset_construction", {"corpus.build_seconds": 4.0, "clips.count": 156})


def test_aggregation_over_results_in_the_run_layout(tmp_path):
    spec = make_spec("cpu", [0, 1, 2], tmp_path / "study")
    for i, s in enumerate(spec.seeds):
        _write_seed(spec, s, i)
    study = aggregate(spec, [0, 1, 2])
    keys = study["keys"]
    k = keys["ahd.test.micro_auc"]
    assert k["n"] == 3 and k["values"] == list(AHD["test"])
    assert k["mean"] == pytest.approx(np.mean(AHD["test"]))
    assert k["std"] == pytest.approx(np.std(AHD["test"], ddof=1))  # sample std
    assert keys["framediff.test.rbdc"]["std"] == pytest.approx(0.0)
    assert keys["rae.test.bleu4_trajectory"]["mean"] == pytest.approx(38.0)
    assert keys["rae.test.bleu4_trajectory"]["std"] == pytest.approx(2.0)
    auroc = keys["rae.test.judgement_auroc"]  # NaN in seed 1: left out of n, None in values
    assert auroc["n"] == 2 and auroc["values"][1] is None and auroc["mean"] == pytest.approx(0.7)
    # timing / wall-time keys and non-numbers are not aggregated
    assert not [k for k in keys if k.startswith("timing.")]
    assert "corpus.build_seconds" not in keys and "stage1.backbone" not in keys
    assert keys["clips.count"]["std"] == 0.0 and keys["stage1.best_epoch"]["n"] == 3
    assert is_timing_key("timing.heatmaps.ahd_s") and is_timing_key("rae.train_s") and not is_timing_key("ahd.test.rbdc")
    assert study["n"] == 3 and study["seeds"] == [0, 1, 2] and study["preset"] == "cpu"
    assert {"platform", "cpus", "torch"} <= set(study["machine"])

    j, md = write_study(spec, study)
    back = json.loads(j.read_text())
    assert back["keys"]["ahd.test.micro_auc"]["mean"] == pytest.approx(k["mean"])
    text = md.read_text()
    mean, std = 100 * np.mean(AHD["test"]), 100 * np.std(AHD["test"], ddof=1)
    assert f"| test | AHD (fine-tuned) | {mean:.1f} ± {std:.1f} | 20.0 ± 10.0 |" in text
    assert "|  | Frame differencing | 66.1 ± 0.0 | 31.6 ± 0.0 | 49.7 ± 0.0 |" in text
    assert "| test_seen | AHD (fine-tuned) |" in text
    # Table 3: one row per stage-2 model; the extra per-answer keys as columns, sample counts not
    head = next(line for line in text.splitlines() if line.startswith("| Model |"))
    assert head.startswith("| Model | Yes/No acc. | Target BLEU-4 | Trajectory BLEU-4 |")
    assert "answers_cut" in head and "judgement_auroc" in head and "_n |" not in head
    assert "| RAE | 60.0 ± 5.0 | 31.00 ± 1.00 | 38.00 ± 2.00 | 3 ± 1 | 70.0 ± 14.1 (n=2) |" in text
    assert "n = 3 training seed(s)" in text and "ddof = 1" in text


def test_docs_section_replaced_and_the_rest_byte_identical(tmp_path):
    spec = make_spec("cpu", [0, 1], tmp_path / "study")
    for i, s in enumerate(spec.seeds):
        _write_seed(spec, s, i)
    study = aggregate(spec, [0, 1])
    before = "# Results\n\nsome table | x\r\n\n## Mean ± std over seeds (`make study`)\n\n"
    after = "\n\n## What these numbers say\n\ntrailing text ±\n"
    doc = tmp_path / "results.md"
    doc.write_bytes((before + f"{BEGIN}\nold study\n{END}" + after).encode())
    write_docs(doc, study)
    raw = doc.read_bytes()
    assert raw.startswith(before.encode()) and raw.endswith(after.encode())
    section = raw.decode()[len(before):-len(after)]
    assert section.startswith(BEGIN) and section.endswith(END) and "old study" not in section
    assert f"`{study['command']}`" in section and "Machine: " in section and "AHD (fine-tuned)" in section
    write_docs(doc, study)
    assert doc.read_bytes() == raw  # idempotent
    plain = tmp_path / "plain.md"
    plain.write_bytes(b"# Notes\n\nno markers here\n")
    write_docs(plain, study)
    assert plain.read_bytes().startswith(b"# Notes\n\nno markers here\n\n" + BEGIN.encode())
    assert plain.read_text().rstrip().endswith(END)
    bad = tmp_path / "bad.md"
    bad.write_text(f"{BEGIN}\n{BEGIN}\n{END}\n")
    with pytest.raises(StudyError, match="bad.md: needs"):
        check_docs(bad)


@pytest.mark.parametrize("args,message", [
    (["--seeds"], "no seeds given"),
    (["--seeds", "0", "1", "0"], "seed 0 is given twice"),
    (["--seeds", "2", "-1"], "seed -1 is negative"),
    (["--seeds", "0", "x"], "seed 'x' is not an integer"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["-p", "stage2.seed=4"], "-p stage2.seed: the study sets"),
    (["-p", "stage1.nope=1"], "unknown config key 'stage1.nope'"),
    (["--to", "05"], "at most up to 04"),
])
def test_cli_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "study"
    assert main(["study", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tvad study: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_failing_seed_is_reported_and_the_others_aggregated(tmp_path):
    spec = make_spec("cpu", [0, 1], tmp_path / "study")
    calls = []

    def runner(preset_name, run_dir, stop, overrides, notebook_dir, progress):  # stands in for run_pipeline
        seed = int(overrides["stage1.seed"])
        calls.append((seed, dict(overrides), stop))
        if seed == 1:
            raise PipelineError("03_rae_sft.ipynb failed in cell 7 (RuntimeError: boom)")
        _write_seed(spec, seed, 0)

    doc = tmp_path / "results.md"
    doc.write_text(f"x\n{BEGIN}\n{END}\n")
    out = run_study(spec, docs=doc, runner=runner, progress=False, log=lambda m: None)
    assert calls[0] == (0, {"stage1.seed": "0", "stage2.seed": "0", "eval.seeds": "[0]"}, "03")
    assert out.finished == [0] and list(out.failed) == [1] and "boom" in out.failed[1]
    study = json.loads((spec.out / "study.json").read_text())
    assert study["n"] == 1 and study["finished"] == [0] and "boom" in study["failed"]["1"]
    assert (spec.seed_dir(0) / DONE).exists() and not (spec.seed_dir(1) / DONE).exists()
    assert doc.read_text() == f"x\n{BEGIN}\n{END}\n"  # docs only get complete studies


@pytest.mark.timeout(240)
def test_real_two_seed_study_of_notebook_01_resumes_and_refuses_other_overrides(tmp_path, capsys):
    """Notebook 01 (tiny generated data) executed for real per seed: a study over [0], then over [0, 1]
    skips seed 0 and runs seed 1 on the same data; other overrides on the same OUT are refused."""
    out = tmp_path / "study"
    small = ["-p", f"data.root={tmp_path / 'syn'}", "-p", f"data.shanghaitech_root={tmp_path / 'nowhere'}",
             "-p", 'data.num_videos={"pretrain": 0, "train": 2, "validation": 1, "test": 2, "test_seen": 1}']
    base = ["study", "--out", str(out), "--to", "01", "--quiet", *small]
    assert main([*base, "--seeds", "0"]) == 0
    done0, res0 = out / "seed-0" / DONE, out / "seed-0" / "results" / "01_dataset_construction.json"
    meta = tmp_path / "syn" / "meta.json"
    stamps = {p: p.stat().st_mtime_ns for p in (done0, res0, meta)}
    marker = json.loads(done0.read_text())
    assert marker["seed"] == 0 and marker["stop"] == "01" and marker["seed_overrides"]["eval.seeds"] == "[0]"
    run0 = json.loads((out / "seed-0" / "run.json").read_text())
    assert run0["seeds"]["stage1"] == 0 and run0["seeds"]["eval"] == [0]
    capsys.readouterr()

    assert main([*base, "--seeds", "0", "1"]) == 0
    log = capsys.readouterr().out
    assert "seed 0 (1/2): finished before, not run" in log and "seed 1 (2/2): running" in log
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # seed 0 untouched, data not regenerated
    run1 = json.loads((out / "seed-1" / "run.json").read_text())
    assert run1["seeds"] == {"global": 0, "stage1": 1, "stage2": 1, "eval": [1]}
    study = json.loads((out / "study.json").read_text())
    assert study["finished"] == [0, 1] and study["n"] == 2
    clips = study["keys"]["clips.count"]
    assert clips["n"] == 2 and clips["values"][0] == clips["values"][1] and clips["std"] == 0.0  # same data

    # the same OUT with other overrides: refused, naming the finished seed's dir; nothing run
    assert main([*base, "--seeds", "0", "1", "-p", "stage1.epochs=3"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'seed-0'}: finished with another configuration" in err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # an unfinished seed dir started with other overrides is refused too
    spec = make_spec("cpu", [0, 1, 5], out, {a.split("=", 1)[0]: a.split("=", 1)[1] for a in small[1::2]}, "01")
    (out / "seed-5").mkdir()
    (out / "seed-5" / "run.json").write_text(json.dumps({"preset": "cpu", "overrides": {"stage1.seed": "5"}}))
    with pytest.raises(StudyError, match=r"seed-5: an unfinished run started with preset 'cpu'"):
        seed_state(spec, 5)
    assert seed_state(spec, 0) == "done"
    assert not math.isnan(study["keys"]["clips.test.clips"]["mean"])
