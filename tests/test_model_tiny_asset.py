"""The cpu preset's tiny backbone is checked before a chain uses it: made by this code's recipe,
instruction-tuned, with the tokenizer its rows were trained on (`check_tiny_asset`)."""

import json
import shutil

import pytest

from tvad.config import preset
from tvad.io import REPO_ROOT
from tvad.model.backbone import TINY_RECIPE, BackboneError, check_tiny_asset, from_config

ASSET = REPO_ROOT / "assets" / "tiny-qwen2.5-vl"


@pytest.fixture
def asset(tmp_path):
    d = tmp_path / "tiny"
    shutil.copytree(ASSET, d)
    return d


def test_the_shipped_asset_passes_and_loads():
    check_tiny_asset(ASSET)
    assert json.loads((ASSET / "pretrain_summary.json").read_text())["recipe"] == TINY_RECIPE
    cfg = preset("cpu").backbone
    assert from_config(cfg).text_dim > 0


def test_another_recipe_is_refused(asset):
    p = asset / "pretrain_summary.json"
    s = json.loads(p.read_text())
    s["recipe"] = "tiny-1"
    p.write_text(json.dumps(s))
    cfg = preset("cpu", {"backbone.path": str(asset)}).backbone
    with pytest.raises(BackboneError, match=r"pretrain_summary.json: this tiny backbone was made by another recipe "
                                            r"\('tiny-1'\).*make tiny-backbone"):
        from_config(cfg)
    del s["recipe"]  # an asset from before recipes were recorded
    p.write_text(json.dumps(s))
    with pytest.raises(BackboneError, match="another recipe \\('unrecorded'\\)"):
        check_tiny_asset(asset)


def test_a_changed_tokenizer_is_refused(asset):
    t = asset / "tokenizer.json"
    tok = json.loads(t.read_text())
    vocab = tok["model"]["vocab"]
    a, b = list(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two token ids swapped: same size, other rows
    t.write_text(json.dumps(tok))
    with pytest.raises(BackboneError, match=r"tokenizer.json: the tokenizer changed since this tiny backbone was trained"):
        check_tiny_asset(asset)
    t.unlink()
    with pytest.raises(BackboneError, match="sha256 missing"):
        check_tiny_asset(asset)


def test_not_instruction_tuned_or_unreadable_is_refused(asset):
    (asset / "instruct_summary.json").unlink()
    with pytest.raises(BackboneError, match="not instruction-tuned.*instruct_tiny"):
        check_tiny_asset(asset)
    (asset / "pretrain_summary.json").write_text("{not json")
    with pytest.raises(BackboneError, match="pretrain_summary.json: unreadable pretraining summary"):
        check_tiny_asset(asset)


def test_other_checkpoints_are_not_checked(tmp_path):
    check_tiny_asset(tmp_path)  # no pretrain_summary.json: a Qwen checkpoint, not ours
    check_tiny_asset("Qwen/Qwen2.5-VL-7B-Instruct")  # a hub id
