"""Bad-input matrix of the prediction store (issue #20, item 4): a missing, truncated, garbled or
NaN-holding prediction file makes `tvad eval` (the Python API and the real command in a subprocess)
fail with one line naming the file (and the video or line); notebook 05's figures fail when no figure
can be made at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tvad import evaluate as ev
from tvad.config import Config

REPO = Path(__file__).resolve().parents[1]


def _store(d: Path) -> Path:
    """A small prediction store: split "test" (4 videos, ground truth, AHD seeds 0 and 1, frame
    differencing), two dialogue variants, parameter counts."""
    rng = np.random.default_rng(0)
    T, H, W = 10, 24, 24
    labels, tracks, heat = {}, {}, {}
    for v in range(4):
        n = f"v{v}"
        m = np.zeros((T, H, W), bool)
        lab = np.zeros(T, np.int8)
        rows = []
        if v % 2:
            for t in range(3, 8):
                m[t, 8:16, 2 + t:10 + t] = True
                lab[t] = 1
                rows.append([1, t, 2 + t, 8, 10 + t, 16])
        h = rng.random((T, H, W)).astype(np.float32) * 0.45
        h[m] += 0.5
        labels[n], tracks[n], heat[n] = lab, np.array(rows, float).reshape(-1, 6), np.clip(h, 0, 1)
    ev.save_heatmap_gt(d, "test", labels, tracks)
    for seed in (0, 1):
        ev.save_heatmap_predictions(d, "test", "ahd", *ev.scores_and_regions(heat), seed=seed)
    noise = {n: rng.random(h.shape).astype(np.float32) for n, h in heat.items()}
    ev.save_heatmap_predictions(d, "test", "framediff", *ev.scores_and_regions(noise))
    preds = [{"id": f"c{i}", "turn": 0, "type": "yes_no", "answer": a, "truth": t}
             for i, (a, t) in enumerate([("Yes.", "Yes"), ("No.", "No"), ("Yes", "No")])]
    preds.append({"id": "c0", "turn": 1, "type": "target", "answer": "a man", "references": ["a man running"]})
    ev.save_dialogue_predictions(d, "rae", preds)
    ev.save_dialogue_predictions(d, "backbone_zero_shot", [dict(p, answer="No.") for p in preds])
    ev.save_parameter_counts(d, {"full": {"total": 1_000_000}})
    return d


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    return _store(tmp_path / "run")


def _pred(d: Path, *parts: str) -> Path:
    return d / "predictions" / Path(*parts)


def _rewrite_npz(path: Path, **changes) -> None:
    """Re-save a store npz with some arrays replaced (meta kept): a file edited after notebook 04."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    path.unlink()
    np.savez_compressed(path, **arrays)


def _start_cli(d: Path) -> subprocess.Popen:
    """The real `tvad eval --run-dir d` in a subprocess (started, not awaited)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "tvad.cli", "eval", "--run-dir", str(d), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _finish(p: subprocess.Popen) -> SimpleNamespace:
    out, err = p.communicate(timeout=600)
    return SimpleNamespace(returncode=p.returncode, stdout=out, stderr=err)


def _cli(d: Path) -> SimpleNamespace:
    return _finish(_start_cli(d))


def _gt_deleted(d):
    p = _pred(d, "heatmaps", "test", "gt.npz")
    p.unlink()
    return f"{p}: no such file, but split 'test' has predictions of ahd, framediff"


def _methods_deleted(d):
    for p in _pred(d, "heatmaps", "test").glob("*.seed*.npz"):
        p.unlink()
    return f"{_pred(d, 'heatmaps', 'test', '<method>.seed<k>.npz')}: no such file, but split 'test' has gt.npz"


def _set_entry(d, name: str, key: str, index, value):
    """Rewrite one entry of one array of a saved predictions file; returns the file."""
    p = _pred(d, "heatmaps", "test", name)
    with np.load(p) as z:
        a = z[key].copy()
    a[index] = value
    _rewrite_npz(p, **{key: a})
    return p


def _nan_score(d):
    return f"{_set_entry(d, 'ahd.seed1.npz', 'scores_1', 4, np.nan)}: video 'v1': frame score at frame 4 is nan"


def _inf_region(d):
    return f"{_set_entry(d, 'framediff.seed0.npz', 'regions_2', (0, 5), np.inf)}: video 'v2': region row 0 is not finite"


def _label_two(d):
    return f"{_set_entry(d, 'gt.npz', 'labels_0', 2, 2)}: video 'v0': frame label at frame 2 is 2, not 0 or 1"


def _truncated(d):
    p = _pred(d, "heatmaps", "test", "ahd.seed0.npz")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return f"{p}: unreadable predictions file (BadZipFile"


def _garbled(d):
    p = _pred(d, "heatmaps", "test", "gt.npz")
    p.write_bytes(np.random.default_rng(1).bytes(2000))
    return f"{p}: unreadable predictions file ("


def _flipped_bytes(d):
    """A zip whose directory is intact but whose compressed data is not (CRC / zlib error on read)."""
    p = _pred(d, "heatmaps", "test", "framediff.seed0.npz")
    b = bytearray(p.read_bytes())
    for i in range(60, 400):
        b[i] ^= 0x5A
    p.write_bytes(bytes(b))
    return f"{p}: "


def _npy_as_npz(d):
    p = _pred(d, "heatmaps", "test", "ahd.seed1.npz")
    p.unlink()
    with open(p, "wb") as f:
        np.save(f, np.zeros(3))
    return f"{p}: not an npz archive"


def _scores_0_100(d):
    p = _pred(d, "heatmaps", "test", "framediff.seed0.npz")
    with np.load(p) as z:
        s = z["scores_0"] * 100
    _rewrite_npz(p, scores_0=s)
    return f"{p}: macro AUC: macro_auc(single_class='pad'): video 'v0' has scores in"


def _bad_jsonl_line(d):
    p = _pred(d, "dialogue", "rae.seed0.jsonl")
    lines = p.read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # a line cut mid-write
    p.write_text("\n".join(lines) + "\n")
    return f"{p}, line 3: not JSON"


def _edit_jsonl(p, index: int, edit):
    """Apply `edit` to the record on line `index` (0-based) of a JSON-lines file; returns the file."""
    lines = p.read_text().splitlines()
    rec = json.loads(lines[index])
    edit(rec)
    lines[index] = json.dumps(rec)
    p.write_text("\n".join(lines) + "\n")
    return p


def _jsonl_missing_answer(d):
    p = _edit_jsonl(_pred(d, "dialogue", "backbone_zero_shot.seed0.jsonl"), 1, lambda r: r.pop("answer"))
    return f"{p}, line 2: no 'answer' field"


def _jsonl_bad_truth(d):
    p = _edit_jsonl(_pred(d, "dialogue", "rae.seed0.jsonl"), 0, lambda r: r.update(truth="maybe"))
    return f"{p}: truths["


def _bad_utf8(d):
    p = _pred(d, "dialogue", "rae.seed0.jsonl")
    p.write_bytes(p.read_bytes()[:-3] + b"\xe2\x82\n")  # a multi-byte character cut off
    return f"{p}: unreadable (UnicodeDecodeError"


def _garbled_parameters(d):
    p = _pred(d, "parameters.json")
    p.write_text('{"full": {"total": 1000')
    return f"{p}: not a JSON file"


CASES = {
    "gt.npz deleted": _gt_deleted,
    "method predictions deleted": _methods_deleted,
    "NaN frame score": _nan_score,
    "inf region score": _inf_region,
    "label 2 in gt": _label_two,
    "truncated npz": _truncated,
    "garbled npz": _garbled,
    "corrupt compressed data": _flipped_bytes,
    "npy saved as npz": _npy_as_npz,
    "scores in [0, 100]": _scores_0_100,
    "cut JSONL line": _bad_jsonl_line,
    "JSONL line without answer": _jsonl_missing_answer,
    "Yes/No truth 'maybe'": _jsonl_bad_truth,
    "cut UTF-8 character": _bad_utf8,
    "garbled parameters.json": _garbled_parameters,
}


def test_good_store_evaluates(run_dir):
    tables = ev.build_tables(run_dir)
    assert [r["split_key"] for r in tables["table2"].rows] == ["test", "test"]
    assert all(r["macro_auc"].values for r in tables["table2"].rows)
    r = _cli(run_dir)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict[str, tuple[Path, str, SimpleNamespace]]:
    """{case: (run dir, expected message start, `tvad eval` result)}: one store per case, broken
    that way, and the real command run on all of them at once (each start imports sklearn)."""
    runs = {}
    for i, (case, breaker) in enumerate(CASES.items()):
        d = _store(tmp_path_factory.mktemp(f"case{i}"))
        runs[case] = (d, breaker(d))
    procs = {case: _start_cli(d) for case, (d, _) in runs.items()}
    return {case: (d, want, _finish(procs[case])) for case, (d, want) in runs.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_eval_names_the_bad_file(broken, case):
    run_dir, want, r = broken[case]
    with pytest.raises(ev.EvalError) as e:
        ev.main_eval(run_dir, quiet=True)
    first = str(e.value).splitlines()[0]
    assert first.startswith(want), first
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"tvad eval: error: {want}"), lines[0]


def test_figures_name_a_corrupt_file(run_dir):
    from tvad.evaluate.figures import make_figures

    want = _nan_score(run_dir)
    with pytest.raises(ev.EvalError) as e:
        make_figures(run_dir, out_dir=run_dir / "figs", log=None)
    assert str(e.value).splitlines()[0].startswith(want)


def test_figures_on_an_empty_run_fail(tmp_path):
    from tvad.evaluate.figures import make_figures
    from tvad.steps.figures import run_figures

    logged, written = [], []
    with pytest.raises(ev.EvalError) as e:
        make_figures(tmp_path, log=logged.append)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith(f"{tmp_path}: no figure inputs (none of {tmp_path / 'predictions' / 'examples'}/*.npz")
    assert msg.endswith("run notebook 04_evaluation first")
    assert any("training_curves skipped" in m for m in logged)
    run = SimpleNamespace(dir=tmp_path, config=Config(), write_results=lambda *a: written.append(a))
    with pytest.raises(ev.EvalError, match="no figure inputs"):
        run_figures(run, log=lambda m: None)
    assert not written and not (tmp_path / "figures").exists()


def test_figures_partial_set_is_allowed(tmp_path):
    """Only training histories: one figure, the others logged as skipped (no error)."""
    from tvad.evaluate.figures import make_figures

    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "history.json").write_text(json.dumps(
        {"train": [{"epoch": 0, "step": 1, "loss": 1.0}, {"epoch": 0, "step": 2, "loss": 0.5}]}))
    logged = []
    made = make_figures(tmp_path, out_dir=tmp_path / "figs", log=logged.append)
    assert list(made) == ["training_curves"]
    assert any("heatmap_grid and trajectory skipped" in m for m in logged)


def test_eval_oserror_is_printed_whole(run_dir, capsys):
    """An OSError (here: `tables` is a file) is printed with its message and path, not its errno."""
    from tvad.cli import main

    (run_dir / "tables").write_text("not a folder")
    assert main(["eval", "--run-dir", str(run_dir), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tvad eval: error: [Errno ") and f"{run_dir / 'tables'}" in err.splitlines()[0], err


@pytest.mark.parametrize("what", ["history", "example"])
def test_figures_name_a_garbled_input(run_dir, what):
    from tvad.evaluate.figures import make_figures

    if what == "history":
        p = run_dir / "stage1" / "history.json"
        p.parent.mkdir()
        p.write_text('{"train": [{"step": 1,')
        want = f"{p}: not a JSON file (line 1"
    else:
        p = _pred(run_dir, "examples", "v1.npz")
        ev.save_example(run_dir, "v1", np.zeros((2, 8, 8, 3), np.uint8), None, {"ahd": np.zeros((2, 8, 8))})
        p.write_bytes(p.read_bytes()[:100])
        want = f"{p}: unreadable predictions file (BadZipFile"
    with pytest.raises(ev.EvalError) as e:
        make_figures(run_dir, out_dir=run_dir / "figs", log=None)
    assert str(e.value).splitlines()[0].startswith(want), str(e.value)
