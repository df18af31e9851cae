"""The run directory: resolved config, seeds, package versions and commit recorded."""

from __future__ import annotations

import json
from pathlib import Path

from tvad.config import Config, flat_keys
from tvad.run import flatten, open_run

REPO = Path(__file__).resolve().parents[1]


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
