"""The configuration tree: presets, YAML round trip, comments on every field, typed overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tvad.config import Config, preset

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_preset_yaml_roundtrip(name, tmp_path):
    cfg = preset(name)
    cfg.to_yaml(tmp_path / "c.yaml")
    back = Config.from_yaml(tmp_path / "c.yaml")
    assert back == cfg
    assert Config.from_yaml(cfg.to_yaml()) == cfg


def test_paper_preset_has_section_4_1_settings():
    p = preset("paper")
    assert p.backbone.path == "Qwen/Qwen2.5-VL-7B-Instruct" and p.backbone.layers == "auto"  # [0, 7, 15, 23, 31]
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


def test_backbone_layers_auto_or_a_list(tmp_path, capsys):
    import yaml

    from tvad.cli import main
    from tvad.config import ConfigError

    assert preset("cpu").backbone.layers == [0, 1, 2, 3] and preset("paper").backbone.layers == "auto"
    assert preset("cpu", {"backbone.layers": "auto"}).backbone.layers == "auto"
    assert preset("paper", {"backbone.layers": "[0,2]"}).backbone.layers == [0, 2]
    assert preset("paper", {"backbone": {"layers": [1]}}).backbone.layers == [1]
    cfg = preset("cpu", {"backbone.layers": "auto"})
    cfg.to_yaml(tmp_path / "c.yaml")
    assert "layers: auto" in (tmp_path / "c.yaml").read_text()
    assert Config.from_yaml(tmp_path / "c.yaml") == cfg
    for value, want in (("auto", "auto"), ("[0,2]", [0, 2])):  # the command line's -p
        assert main(["config", "--preset", "cpu", "-p", f"backbone.layers={value}"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["backbone"]["layers"] == want
    for bad in ("sometimes", "[]", "[-1]", "AUTO", "null", "[auto]"):
        with pytest.raises(ConfigError) as e:
            preset("cpu", {"backbone.layers": bad})
        assert str(e.value) == (f"config key 'backbone.layers': expected 'auto' or a non-empty list of integers "
                                f">= 0, got {bad!r}")
