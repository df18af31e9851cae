"""Tables and curves from saved predictions: storage round trips, metrics equal tvad.metrics, table formats, CLI eval."""

import json

import numpy as np
import pytest

from tvad import evaluate as ev
from tvad.evaluate import tables
from tvad.metrics import bleu4, dialogue_metrics, macro_auc, micro_auc, rbdc_tbdc, regions_from_heatmaps


def _split(rng, n_videos=4, T=10, H=32, W=32, signal=0.6):
    """Synthetic videos: a moving square anomaly in frames 3-7 of odd videos, heatmaps that see it."""
    labels, tracks, heat, masks = {}, {}, {}, {}
    for v in range(n_videos):
        name = f"v{v}"
        m = np.zeros((T, H, W), np.uint8)
        lab = np.zeros(T, np.int8)
        rows = []
        if v % 2:
            for t in range(3, 8):
                x = 4 + 2 * t
                m[t, 10:18, x:x + 8] = 1
                lab[t] = 1
                rows.append([1, t, x, 10, x + 8, 18])
        h = rng.random((T, H, W)).astype(np.float32) * 0.45
        h[m > 0] += signal
        labels[name], tracks[name], heat[name], masks[name] = lab, np.array(rows, float).reshape(-1, 6), \
            np.clip(h, 0, 1), m
    return labels, tracks, heat, masks


@pytest.fixture()
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    labels, tracks, heat, masks = _split(rng)
    ev.save_heatmap_gt(tmp_path, "test", labels, tracks, {n: ("jump" if labels[n].any() else "normal") for n in labels})
    for seed, sig in ((0, 0.6), (1, 0.5)):
        h = {n: np.clip(x - 0.6 + sig, 0, 1) for n, x in heat.items()}
        ev.save_heatmap_predictions(tmp_path, "test", "ahd", *ev.scores_and_regions(h), seed=seed)
    noise = {n: rng.random(x.shape).astype(np.float32) for n, x in heat.items()}
    ev.save_heatmap_predictions(tmp_path, "test", "framediff", *ev.scores_and_regions(noise))
    preds = [{"id": f"c{i}", "turn": 0, "type": "yes_no", "answer": a, "truth": t, "references": [t]}
             for i, (a, t) in enumerate([("Yes, a person.", "Yes"), ("No.", "No"), ("Yes", "No"), ("maybe", "Yes")])]
    preds += [{"id": "c0", "turn": 1, "type": "target", "answer": "a man in a red shirt",
               "references": ["a man in a red shirt", "a person"]},
              {"id": "c0", "turn": 2, "type": "trajectory", "answer": "moves left quickly",
               "references": ["moves right slowly"]}]
    ev.save_dialogue_predictions(tmp_path, "rae", preds)
    ev.save_dialogue_predictions(tmp_path, "backbone_zero_shot", [dict(p, answer="No.") for p in preds])
    ev.save_parameter_counts(tmp_path, {"full": {"total": 12_345_678}, "no_rae": {"total": 12_000_000},
                                        "no_ahd": {"total": 12_300_000}, "backbone": {"total": 11_900_000}})
    return tmp_path, labels, tracks, heat


def test_heatmap_roundtrip_and_metrics_match_tvad_metrics(run_dir):
    d, labels, tracks, heat = run_dir
    gt = ev.load_heatmap_gt(d, "test")
    assert gt.names == list(labels) and gt.types["v1"] == "jump"
    preds = ev.load_heatmap_predictions(d, "test", "ahd")
    assert sorted(preds) == [0, 1]
    scores, regions = preds[0]
    m = ev.heatmap_metrics(scores, regions, gt)
    s_ref = {n: h.reshape(len(h), -1).max(1) for n, h in heat.items()}
    assert m["micro_auc"] == pytest.approx(micro_auc(s_ref, labels))
    assert m["macro_auc"] == pytest.approx(macro_auc(s_ref, labels))
    ref = rbdc_tbdc({n: regions_from_heatmaps(h, 0.5) for n, h in heat.items()}, tracks,
                    {n: len(v) for n, v in labels.items()})
    assert (m["rbdc"], m["tbdc"]) == pytest.approx(ref)
    assert m["rbdc"] > 0.5 and m["micro_auc"] > 0.9
    assert ev.heatmap_methods(d, "test") == ["framediff", "ahd"]  # table order, not alphabetical
    # a missing video is a clear error
    with pytest.raises(ev.EvalError, match="lack"):
        ev.heatmap_metrics({"v0": scores["v0"]}, regions, gt)


def test_curves(run_dir):
    d, labels, *_ = run_dir
    gt = ev.load_heatmap_gt(d, "test")
    scores, regions = ev.load_heatmap_predictions(d, "test", "ahd")[0]
    fpr, tpr, auc = ev.roc_curve(scores, gt)
    assert fpr[0] == 0 and tpr[-1] == 1 and auc == pytest.approx(ev.heatmap_metrics(scores, regions, gt)["micro_auc"])
    c = ev.detection_curves(regions, gt)
    assert c["fpr"][0] == 0 and np.all(np.diff(c["fpr"]) >= 0) and np.all(np.diff(c["rbdr"]) >= 0)
    assert 0 < c["rbdr"][-1] <= 1 and 0 < c["tbdr"][-1] <= 1


def test_dialogue_metrics(run_dir):
    d, *_ = run_dir
    preds = ev.load_dialogue_predictions(d, "rae")[0]
    m = dialogue_metrics(preds)
    assert m["yes_no_accuracy"] == pytest.approx(0.5) and m["yes_no_unparsed"] == 1
    assert m["yes_no_balanced_accuracy"] == pytest.approx(0.5)
    assert m["bleu4_target"] == pytest.approx(100.0)
    assert m["bleu4_trajectory"] == pytest.approx(bleu4(["moves left quickly"], [["moves right slowly"]]))
    with pytest.raises(ev.EvalError, match="answer"):
        ev.save_dialogue_predictions(d, "bad", [{"id": 1, "turn": 0, "type": "yes_no"}])


def test_tables_formats_and_results(run_dir):
    d, *_ = run_dir
    tables = ev.build_tables(d)
    assert set(tables) == {"table2", "table3", "table4"}
    t2 = tables["table2"]
    ahd = next(r for r in t2.rows if r["method_key"] == "ahd")
    assert len(ahd["micro_auc"].values) == 2 and ahd["micro_auc"].std is not None
    assert " ± " in ahd["micro_auc"].text()
    fd = next(r for r in t2.rows if r["method_key"] == "framediff")
    assert fd["micro_auc"].std is None and "±" not in fd["micro_auc"].text()
    md = t2.to_markdown()
    assert "| Split | Method | Micro AUC" in md and "AHD (fine-tuned)" in md
    tex = t2.to_latex()
    assert r"\begin{tabular}{llrrrr}" in tex and r"$\pm$" in tex and "±" not in tex
    csv_lines = t2.to_csv().splitlines()
    assert csv_lines[0].startswith("split,method,micro_auc_mean,micro_auc_std,micro_auc_n")
    t3 = tables["table3"]
    assert [r["variant_key"] for r in t3.rows] == ["backbone_zero_shot", "rae"]
    t4 = tables["table4"]
    full = next(r for r in t4.rows if r["method"] == "T-VAD")
    assert full["parameters"] == "12.35M" and full["rbdc"].values and full["yes_no_accuracy"].values
    no_ahd = next(r for r in t4.rows if r["method"] == "T-VAD w/o AHD")
    assert not no_ahd["rbdc"].values and no_ahd["rbdc"].text() == "–"
    paths = ev.write_tables(d, tables)
    for name in ("table2", "table3", "table4"):
        for ext in ("json", "csv", "md", "tex"):
            assert (d / "tables" / f"{name}.{ext}").exists()
    r = json.loads((d / "results" / "04_evaluation.json").read_text())
    assert r["table2.test.ahd.micro_auc.n"] == 2
    assert r["table3.rae.yes_no_accuracy.mean"] == pytest.approx(0.5)
    # the Target answer names a person as its references do; 4 answers end mid-sentence ("Yes", "maybe", ...)
    assert r["table3.rae.target_category_accuracy.mean"] == 1.0 and r["table3.rae.answers_cut.mean"] == 4
    assert "| right category % | cut answers |" in t3.to_markdown() and "| 100.0 | 4 |" in t3.to_markdown()
    assert r["table4.t_vad.parameters"] == "12.35M"
    assert all(p.exists() for p in paths)


def test_cli_eval(run_dir, capsys):
    from tvad.cli import main

    d, *_ = run_dir
    assert main(["eval", "--run-dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert "Table 2 analogue" in out and "Table 4 analogue" in out
    assert main(["eval", "--run-dir", str(d / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tvad eval: error:") and "Traceback" not in err
    (d / "empty").mkdir()
    assert main(["eval", "--run-dir", str(d / "empty")]) == 1
    assert "no predictions" in capsys.readouterr().err




def test_table3_per_dataset_in_the_papers_column_order(tmp_path):
    """Answers about clips of two datasets: a row per variant over all, then per dataset (ShanghaiTech
    before UBnormal, as the paper's columns), each computed on that dataset's answers only."""
    def preds(ds, right):
        return [{"id": f"{ds}{i}", "turn": 0, "type": "yes_no", "answer": "Yes." if right else "No.",
                 "truth": "Yes", "references": ["Yes."], "dataset": ds} for i in range(3)]

    ev.save_dialogue_predictions(tmp_path, "rae", preds("ubnormal", True) + preds("shanghaitech", False))
    t = tables.table3(tmp_path)
    assert [(r["dataset"], r["variant_key"]) for r in t.rows] == [
        ("all", "rae"), ("shanghaitech", "shanghaitech.rae"), ("ubnormal", "ubnormal.rae")]
    acc = {r["dataset"]: r["yes_no_accuracy"].to_json()["mean"] for r in t.rows}
    assert acc == {"all": 0.5, "shanghaitech": 0.0, "ubnormal": 1.0}
    keys = tables.table_results({"table3": t})
    assert keys["table3.rae.yes_no_accuracy.mean"] == 0.5 and keys["table3.ubnormal.rae.yes_no_accuracy.mean"] == 1.0
    assert t.columns[0] == ("dataset", "Dataset") and "| shanghaitech |" in t.to_markdown()
    # one dataset: the table as before (no dataset column)
    ev.save_dialogue_predictions(tmp_path, "rae", preds("ubnormal", True))
    assert [r["variant_key"] for r in tables.table3(tmp_path).rows] == ["rae"]
