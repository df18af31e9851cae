"""The papermill chain runner, the committed notebooks it runs, and the `tvad` command's errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from tvad.pipeline import PipelineError, chain, parameters_cell, run_pipeline

REPO = Path(__file__).resolve().parents[1]


def _nb(path: Path, body: str, params: bool = True) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = []
    if params:
        c = nbformat.v4.new_code_cell('preset = "cpu"\nrun_dir = "runs/cpu"\noverrides = {}\nforce = False')
        c.metadata["tags"] = ["parameters"]
        cells.append(c)
    cells.append(nbformat.v4.new_code_cell(body))
    nb.cells = cells
    nbformat.write(nb, str(path))


def test_runner_executes_in_order_passes_parameters_and_names_failures(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    log = tmp_path / "order.txt"
    body = ("import json, pathlib\n"
            f"pathlib.Path({str(log)!r}).open('a').write(NAME + ' ' + json.dumps(overrides) + ' ' + preset + '\\n')\n"
            "assert pathlib.Path(run_dir).is_dir()")
    _nb(nbdir / "02_second.ipynb", "NAME = '02'\n" + body)
    _nb(nbdir / "01_first.ipynb", "NAME = '01'\n" + body)
    _nb(nbdir / "00_quickstart.ipynb", "raise SystemExit('00 is not part of the chain')")
    _nb(nbdir / "03_broken.ipynb", "x = 1\nraise RuntimeError('boom here')")
    run_dir = tmp_path / "run"
    with pytest.raises(PipelineError, match=r"03_broken.ipynb failed in cell .*RuntimeError: boom here"):
        run_pipeline("cpu", run_dir, overrides={"stage1.epochs": "2"}, notebook_dir=nbdir, progress=False)
    lines = log.read_text().splitlines()
    assert lines == ['01 {"stage1.epochs": "2"} cpu', '02 {"stage1.epochs": "2"} cpu']
    assert (run_dir / "notebooks" / "01_first.ipynb").exists()
    assert (run_dir / "notebooks" / "03_broken.ipynb").exists()  # the executed copy with the traceback
    # --from/--to select a slice
    log.unlink()
    run_pipeline("cpu", run_dir, start="02", stop="02", notebook_dir=nbdir, progress=False)
    assert log.read_text().splitlines() == ['02 {} cpu']


def test_runner_bad_input_is_a_clear_error(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _nb(nbdir / "01_noparams.ipynb", "pass", params=False)
    with pytest.raises(PipelineError, match="01_noparams.ipynb: needs exactly one cell tagged 'parameters'"):
        run_pipeline("cpu", tmp_path / "r", notebook_dir=nbdir, progress=False)
    with pytest.raises(PipelineError, match="unknown preset"):
        run_pipeline("laptop", tmp_path / "r", notebook_dir=nbdir, progress=False)
    with pytest.raises(PipelineError, match="unknown config key 'stage1.nope'"):
        run_pipeline("cpu", tmp_path / "r", overrides={"stage1.nope": 1}, notebook_dir=nbdir, progress=False)
    with pytest.raises(PipelineError, match="no notebook '07'"):
        run_pipeline("cpu", tmp_path / "r", start="07", notebook_dir=nbdir, progress=False)


def test_cli_errors_are_one_line_not_tracebacks(tmp_path):
    def tvad(*args):
        return subprocess.run([sys.executable, "-m", "tvad.cli", *args], capture_output=True, text=True,
                              cwd=REPO, timeout=120)

    r = tvad("pipeline", "--preset", "nope", "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 1 and "unknown preset 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = tvad("probe", str(tmp_path / "missing.mp4"))
    assert r.returncode == 1 and "missing.mp4: no such video file" in r.stderr and "Traceback" not in r.stderr
    r = tvad("config", "--preset", "paper", "-p", "stage1.epochs=3")
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["stage1"]["epochs"] == 3


def test_committed_notebooks_have_no_outputs_and_one_parameters_cell():
    nbs = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert nbs, "no notebooks committed"
    for p in nbs:
        nb = json.loads(p.read_text())
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                assert not c.get("outputs") and c.get("execution_count") is None, f"{p.name} has outputs"
        parameters_cell(p)
        src = "".join(nb["cells"][parameters_cell(p)]["source"])
        for name in ("preset", "run_dir", "overrides", "force"):
            assert re.search(rf"^{name} = ", src, flags=re.M), f"{p.name}: parameters cell lacks {name}"
    assert [s.number for s in chain()] == sorted({s.number for s in chain()})


def test_committed_notebooks_code_cells_compile():
    """A syntax error in a notebook shows up here in a second, not after the chain has run to it."""
    import ast

    for p in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(p), as_version=4)
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code":
                src = "\n".join(l for l in c.source.splitlines() if not l.lstrip().startswith(("%", "!")))
                try:
                    ast.parse(src)
                except SyntaxError as e:
                    pytest.fail(f"{p.name} cell {i}: {e}")
