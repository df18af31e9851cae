"""The install files and the README's contract: environment.yml agrees with pyproject.toml, the two
commands, CI runs `make test`."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


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
