"""Bad config overrides (issue #20, item 3): typed against their dataclass field, ranges checked, one
line naming the key, the value and what was expected, before anything runs (`preset`, the pipeline
runner, `tvad config` and `tvad pipeline`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tvad.config import ConfigError, preset
from tvad.pipeline import PipelineError, run_pipeline

REPO = Path(__file__).resolve().parents[1]

BAD = [  # (key, value, first line of the error)
    ("stage1.epochs", "abc", "config key 'stage1.epochs': expected an integer > 0, got 'abc'"),
    ("stage1.lr", "fast", "config key 'stage1.lr': expected a number > 0, got 'fast'"),
    ("backbone.layers", "3", "config key 'backbone.layers': expected 'auto' or a non-empty list of integers >= 0, "
                             "got '3'"),
    ("stage1.epochs", "-3", "config key 'stage1.epochs': expected an integer > 0, got '-3'"),
    ("stage1.epochs", "2.5", "config key 'stage1.epochs': expected an integer > 0, got '2.5'"),
    ("stage1.lr", "nan", "config key 'stage1.lr': expected a number > 0, got 'nan'"),
    ("data.generate", "maybe", "config key 'data.generate': expected true/false, got 'maybe'"),
    ("stage2.bf16", "2", "config key 'stage2.bf16': expected true/false, got '2'"),
    ("backbone.layers", "[0, a]", "config key 'backbone.layers': expected 'auto' or a non-empty list of integers >= 0, "
                                  "got '[0, a]'"),
    ("data.clip_size", "[224]", "config key 'data.clip_size': expected a list of 2 integers > 0, got '[224]'"),
    ("ahd.text_dim", "0", "config key 'ahd.text_dim': expected an integer > 0 or null, got '0'"),
    ("stage2.video_max_tokens", "many", "config key 'stage2.video_max_tokens': expected an integer > 0 or null, "
                                        "got 'many'"),
    ("ahd.frame_score", "mean", "config key 'ahd.frame_score': expected one of 'max', 'topk', got 'mean'"),
    ("stage1.select_by", "accuracy", "config key 'stage1.select_by': expected one of 'micro_auc', 'macro_auc', "
                                     "'rbdc', 'tbdc', 'last', got 'accuracy'"),
    ("stage2.eval_splits", "[val, train]", "config key 'stage2.eval_splits': expected a list of values from "
                                           "'val', 'test', 'test_seen', got '[val, train]'"),
    ("stage1.warmup_ratio", "1.5", "config key 'stage1.warmup_ratio': expected a number in [0, 1], got '1.5'"),
    ("stage1.clip_frames", "7", "config key 'stage1.clip_frames': expected an even integer >= 2, got '7'"),
    ("eval.seeds", "[-1]", "config key 'eval.seeds': expected a non-empty list of integers >= 0, got '[-1]'"),
    ("data.num_videos.train", "x", "config key 'data.num_videos.train': expected an integer >= 0, got 'x'"),
    ("stage1", "{epochs: 0}", "config key 'stage1.epochs': expected an integer > 0, got 0"),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_bad_override_through_preset(key, value, message):
    with pytest.raises(ConfigError) as e:
        preset("cpu", {key: value})
    assert str(e.value).splitlines()[0] == message


@pytest.mark.parametrize("overrides,message", [
    ({"stage1.epochs": True}, "config key 'stage1.epochs': expected an integer > 0, got True"),
    ({"stage1.lr": "1e-3x"}, "config key 'stage1.lr': expected a number > 0, got '1e-3x'"),
    ({"data.root": 5}, "config key 'data.root': expected a string, got 5"),
    ({"eval.sigma": float("inf")}, "config key 'eval.sigma': expected a number >= 0 or null, got inf"),
])
def test_bad_python_override_values(overrides, message):
    with pytest.raises(ConfigError) as e:
        preset("cpu", overrides)
    assert str(e.value).splitlines()[0] == message


def test_good_overrides_typed():
    cfg = preset("cpu", {"stage1.lr": "1e-3", "ahd.text_dim": "null", "eval.sigma": "none", "data.generate": "yes",
                         "stage2.video_max_tokens": "1280", "backbone.layers": "[0, 2]", "stage1.epochs": 2,
                         "data.num_videos.train": "3", "stage2.eval_splits": "[]", "data.root": "123"})
    assert cfg.stage1.lr == 1e-3 and cfg.ahd.text_dim is None and cfg.eval.sigma is None and cfg.data.generate is True
    assert cfg.stage2.video_max_tokens == 1280 and cfg.backbone.layers == [0, 2] and cfg.stage1.epochs == 2
    assert cfg.data.num_videos["train"] == 3 and cfg.stage2.eval_splits == [] and cfg.data.root == "123"
    # every preset's own values pass the same checks
    for name in ("cpu", "paper"):
        flat = _flat(preset(name).to_dict())
        assert preset(name, flat) == preset(name)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "num_videos":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_bad_override_stops_the_runner_before_anything_runs(tmp_path):
    with pytest.raises(PipelineError, match=r"^config key 'stage1.epochs': expected an integer > 0, got '-3'$"):
        run_pipeline("cpu", tmp_path / "r", overrides={"stage1.epochs": "-3"}, notebook_dir=tmp_path, progress=False)
    assert not (tmp_path / "r").exists()


def _tvad(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "tvad.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180, env=env)


@pytest.mark.parametrize("command", ["config", "pipeline"])
@pytest.mark.parametrize("param,message", [
    ("stage1.epochs=abc", "config key 'stage1.epochs': expected an integer > 0, got 'abc'"),
    ("stage1.lr=fast", "config key 'stage1.lr': expected a number > 0, got 'fast'"),
    ("backbone.layers=3", "config key 'backbone.layers': expected 'auto' or a non-empty list of integers >= 0, "
                          "got '3'"),
    ("stage1.epochs=-3", "config key 'stage1.epochs': expected an integer > 0, got '-3'"),
])
def test_bad_override_through_the_cli(command, param, message, tmp_path):
    extra = ["--run-dir", str(tmp_path / "run")] if command == "pipeline" else []
    r = _tvad(command, *extra, "-p", "stage1.epochs=2", "-p", param)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[0] == f"tvad {command}: error: {message}"
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (tmp_path / "run").exists()
