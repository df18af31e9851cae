"""Configuration, run dir, the papermill chain runner and CLI, and the install files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from tvad.config import Config, flat_keys, preset
from tvad.pipeline import PipelineError, chain, parameters_cell, run_pipeline
from tvad.run import flatten, open_run

REPO = Path(__file__).resolve().parents[1]


# -- config ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_preset_yaml_roundtrip(name, tmp_path):
    cfg = preset(name)
    cfg.to_yaml(tmp_path / "c.yaml")
    back = Config.from_yaml(tmp_path / "c.yaml")
    assert back == cfg
    assert Config.from_yaml(cfg.to_yaml()) == cfg


def test_paper_preset_has_section_4_1_settings():
    p = preset("paper")
    assert p.backbone.path == "Qwen/Qwen2.5-VL-7B-Instruct" and p.backbone.layers == [0, 7, 15, 23, 31]
    assert (p.stage1.batch_size, p.stage1.grad_accum, p.stage1.warmup_ratio) == (1, 8, 0.1)
    assert (p.stage2.lora_r, p.stage2.lora_alpha, p.stage2.lora_dropout) == (16, 32, 0.05)
    assert (p.stage2.max_length, p.stage2.eval_steps, p.stage2.grad_accum) == (2048, 100, 8)
    assert p.stage2.lora_targets == ["q_proj", "v_proj"] and p.stage2.phase_b_last_layers == 4
    assert (p.eval.threshold, p.eval.iou, p.eval.link_iou, p.eval.hit_ratio) == (0.5, 0.1, 0.1, 0.1)
    assert p.data.clip_size == [476, 868] and p.data.clip_fps == 1.0


def test_every_config_field_is_commented():
    import dataclasses
    import inspect

    import typing

    classes = [Config] + [t for t in typing.get_type_hints(Config).values() if dataclasses.is_dataclass(t)]
    for cls in classes:
        src = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            line = next(ln for ln in src.splitlines() if re.match(rf"\s+{f.name}: ", ln))
            assert "#" in line, f"{cls.__name__}.{f.name} has no comment"


def test_overrides_typed_and_unknown_keys_rejected():
    cfg = preset("cpu", {"stage1.epochs": "3", "stage1.lr": 1, "eval.seeds": "[0, 1]"})
    assert cfg.stage1.epochs == 3 and cfg.stage1.lr == 1.0 and cfg.eval.seeds == [0, 1]
    with pytest.raises(KeyError, match="stage1.epoch"):
        preset("cpu", {"stage1.epoch": 3})
    with pytest.raises(ValueError, match="unknown preset 'gpu'"):
        preset("gpu")
    with pytest.raises(ValueError, match="true/false"):
        preset("cpu", {"data.generate": "maybe"})


def test_run_dir_records_config_seeds_versions_commit(tmp_path):
    run = open_run(tmp_path / "r", "cpu", {"stage1.epochs": 2})
    assert Config.from_yaml(run.dir / "config.yaml").stage1.epochs == 2
    info = json.loads((run.dir / "run.json").read_text())
    assert info["seed"] == 0 and info["seeds"]["stage1"] == 0
    assert info["versions"]["torch"] and info["versions"]["transformers"].startswith("5.")
    assert "git_commit" in info
    run.write_results("99_x", {"ahd": {"test": {"micro_auc": 0.5}}})
    run.write_results("99_x", {"ahd.val.rbdc": 0.25})
    assert run.results("99_x") == {"ahd.test.micro_auc": 0.5, "ahd.val.rbdc": 0.25}
    assert flatten({"a": {"b": 1}, "c": 2}) == {"a.b": 1, "c": 2}
    assert "stage1.epochs" in flat_keys(run.config)


# -- the chain runner, on fixture notebooks run by the real papermill ------------------------

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


# -- committed notebooks and install files ---------------------------------------------------

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


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps and "conda-forge" in env["channels"]
    pip_lines = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-e .[dev]" in pip_lines
    # any extra conda-level requirement must be pinned exactly as in pyproject
    reqs = {re.split(r"[<>=;\[ ]", r)[0].lower(): r for r in py["project"]["dependencies"]}
    for d in deps:
        if isinstance(d, str) and not d.startswith(("python", "pip")):
            name = re.split(r"[<>=]", d)[0].lower()
            assert name in reqs, f"environment.yml lists {d} which pyproject does not"
    # the v5-era pins the code relies on
    joined = " ".join(py["project"]["dependencies"])
    for pin in ("transformers>=5.24,<6", "trl>=1.16,<2", "peft>=0.21,<1"):
        assert pin in joined


def test_readme_gives_the_two_commands_and_ci_runs_make_test():
    readme = (REPO / "README.md").read_text()
    assert "make pipeline" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
