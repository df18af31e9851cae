"""Bad checkpoints and resume states (issue #20, items 1 and 6): a planted pickle in stage 1's
training state is refused, never run; `save_last` is atomic (the state is in the folder before it is
swapped in; a `last` without a state, or one left aside as `last.old`, is said or recovered); corrupt,
non-finite or mismatched weights files are one-line errors naming the file; the feature cache
recomputes damaged files and lists them."""

from __future__ import annotations

import json
import os
import pickle
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import tvad.model.ahd as ahd_mod
from tvad.config import AHDConfig, RAEConfig, Stage1Config
from tvad.model.ahd import CheckpointError, load_ahd, save_ahd
from tvad.train.common import Killed
from tvad.train.stage1 import ResumeStateError, train
from stage1_fixtures import fresh_ahd, planted

CFG = Stage1Config(epochs=2, grad_accum=3, lr=1e-2, min_lr=1e-4, clip_frames=4, seed=0)


TR = planted(6, 0)  # 12 clips of 4 frames / accum 3 = 4 steps per epoch, 8 in all


def killed_run(out, steps=3):
    with pytest.raises(Killed):
        train(fresh_ahd(), TR, [], CFG, out, progress=False, checkpoint_every=2, stop_after_steps=steps)
    return out / "last"


def resume(out):
    a = fresh_ahd()
    train(a, TR, [], CFG, out, progress=False, checkpoint_every=2, resume=True)
    return a


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    a = fresh_ahd()
    train(a, TR, [], CFG, tmp_path_factory.mktemp("full"), progress=False, checkpoint_every=2)
    return a.state_dict()


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# -- item 1: no code runs from a run directory ----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["torch.save", "raw pickle"])
def test_planted_pickle_in_training_state_is_refused_not_run(tmp_path, fmt):
    last = killed_run(tmp_path / "run")
    marker = tmp_path / "pwned"
    state = last / "training_state.pt"
    if fmt == "torch.save":
        torch.save({"optimizer": Evil(marker), "total": 8}, state)
    else:
        state.write_bytes(pickle.dumps({"optimizer": Evil(marker), "total": 8}))
    with pytest.raises(ResumeStateError) as e:
        resume(tmp_path / "run")
    assert str(e.value).splitlines()[0].startswith(f"{state}: refused to load: it holds Python objects")
    assert not marker.exists()


def test_training_state_of_an_older_tvad_is_refused(tmp_path):
    """The old format pickled numpy's RNG state (an ndarray): refused too, with the way out."""
    last = killed_run(tmp_path / "run")
    state = last / "training_state.pt"
    ts = torch.load(state, weights_only=True)
    ts["rng"]["numpy"] = np.random.get_state()
    torch.save(ts, state)
    with pytest.raises(ResumeStateError, match=r"refused to load: .*; delete .*last to restart stage 1"):
        resume(tmp_path / "run")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing keys"])
def test_corrupt_training_state_is_named(tmp_path, damage):
    last = killed_run(tmp_path / "run")
    state = last / "training_state.pt"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:200])
    elif damage == "garbage":
        state.write_bytes(b"\x00garbage" * 50)
    else:
        torch.save({"total": 8}, state)
    with pytest.raises(ResumeStateError) as e:
        resume(tmp_path / "run")
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{state}: ") and ("corrupt training state" in first or "refused" in first)


def test_training_state_holds_only_tensors_and_plain_values(tmp_path):
    last = killed_run(tmp_path / "run")
    ts = torch.load(last / "training_state.pt", weights_only=True)  # no allow-listed globals needed
    assert isinstance(ts["rng"]["python"]["state"], list) and ts["rng"]["torch"].dtype == torch.uint8
    json.dumps(ts["state"])  # the position and histories are plain JSON values


# -- item 6: atomic save_last ----------------------------------------------------------------------------

def test_save_last_writes_the_state_before_the_swap_and_resume_is_exact(tmp_path, monkeypatch, uninterrupted):
    seen = []
    real = ahd_mod.atomic_replace_dir

    def spy(tmp, dest):
        seen.append((tmp / "training_state.pt").is_file())
        return real(tmp, dest)

    monkeypatch.setattr(ahd_mod, "atomic_replace_dir", spy)
    killed_run(tmp_path / "run", steps=5)
    assert seen and all(seen)  # every `last` swapped in already carries its training state
    monkeypatch.undo()
    a = resume(tmp_path / "run")
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in uninterrupted.items())


def test_last_left_aside_by_a_kill_inside_the_swap_is_recovered(tmp_path, uninterrupted):
    last = killed_run(tmp_path / "run", steps=5)
    last.rename(last.with_name("last.old"))  # killed between atomic_replace_dir's two renames
    a = resume(tmp_path / "run")
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in uninterrupted.items())


def test_last_without_training_state_is_said_not_restarted_silently(tmp_path):
    last = killed_run(tmp_path / "run")
    (last / "training_state.pt").unlink()
    with pytest.raises(ResumeStateError) as e:
        resume(tmp_path / "run")
    assert str(e.value).splitlines()[0].startswith(f"{last}: a `last` checkpoint without its training_state.pt")


# -- item 6: corrupt AHD checkpoints --------------------------------------------------------------------

@pytest.fixture
def ahd_ckpt(tmp_path):
    return save_ahd(fresh_ahd(), tmp_path / "ck", {"backbone": {"identity": "x", "layers": [0, 1]}})


def _truncate(f):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garble(f):
    b = bytearray(f.read_bytes())
    b[8:40] = b"{{{{ not a safetensors header }}}"
    f.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", [_truncate, _garble], ids=["truncated", "garbled"])
def test_corrupt_ahd_weights_are_named(ahd_ckpt, damage):
    f = ahd_ckpt / "ahd.safetensors"
    damage(f)
    with pytest.raises(CheckpointError) as e:
        load_ahd(ahd_ckpt)
    assert str(e.value).splitlines()[0].startswith(f"{f}: corrupt safetensors file (truncated or garbled")


def test_non_finite_ahd_weights_are_named(ahd_ckpt):
    f = ahd_ckpt / "ahd.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(str(f)).items()}, str(f))
    with pytest.raises(CheckpointError) as e:
        load_ahd(ahd_ckpt)
    assert str(e.value).splitlines()[0].startswith(f"{f}: non-finite weights (NaN/inf) in ")


def _edit_json(path, edit):
    """Apply `edit` to a JSON file's object in place; returns the file."""
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))
    return path


def test_ahd_json_garbled_or_mismatched(ahd_ckpt):
    j = _edit_json(ahd_ckpt / "ahd.json", lambda m: m["ahd"].update(hidden=32))
    with pytest.raises(CheckpointError) as e:
        load_ahd(ahd_ckpt)
    assert str(e.value).splitlines()[0].startswith(
        f"{ahd_ckpt / 'ahd.safetensors'}: weights do not fit the configured model (settings from {j}): ")
    j.write_text('{"format": "tvad-ahd-1", ')
    with pytest.raises(CheckpointError, match=rf"^{j}: corrupt checkpoint file \(not JSON"):
        load_ahd(ahd_ckpt)


# -- item 6: corrupt full-model checkpoints -------------------------------------------------------------

@pytest.fixture(scope="module")
def model_ckpt(tmp_path_factory):
    from tvad.model import TVAD, build_ahd, save_model
    from tvad.model.tiny import build_tiny

    torch.manual_seed(0)
    bb = build_tiny(seed=0, max_pixels=112 * 112)
    model = TVAD.build(bb, build_ahd(bb, AHDConfig(hidden=32), [0, 3], seed=0),
                       {"backbone": {"layers": [0, 3], "identity": bb.identity}}, RAEConfig(channels=8), seed=0,
                       meta={"fps": 8.0})
    return save_model(model, tmp_path_factory.mktemp("model") / "ck")


@pytest.fixture
def model_copy(model_ckpt, tmp_path):
    return shutil.copytree(model_ckpt, tmp_path / "ck")


def test_changed_rae_channels_in_tvad_json_is_named(model_copy):
    from tvad.model.checkpoint import read_checkpoint

    j = _edit_json(model_copy / "tvad.json", lambda m: m["rae"].update(channels=16))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(model_copy, device="cpu")
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{model_copy / 'rae.safetensors'}: weights do not fit the configured model: ")
    assert "'channels': 16" in first and f"({j}) do not match rae.safetensors" in first


@pytest.mark.parametrize("damage", [_truncate, _garble], ids=["truncated", "garbled"])
@pytest.mark.parametrize("name", ["rae.safetensors", "backbone/model.safetensors"])
def test_corrupt_full_model_weights_are_named(model_copy, name, damage):
    from tvad.model.checkpoint import read_checkpoint

    f = model_copy / name
    damage(f)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(model_copy, device="cpu")
    assert str(e.value).splitlines()[0].startswith(f"{f}: corrupt safetensors file (truncated or garbled")


def test_corrupt_stage2_trainables_are_named(model_ckpt, tmp_path):
    from tvad.model.checkpoint import read_checkpoint
    from tvad.train.stage2 import TRAINABLES_FILE, _load_trainables, _trainables_state

    model = read_checkpoint(model_ckpt, device="cpu")
    f = tmp_path / TRAINABLES_FILE
    save_file(_trainables_state(model), str(f))
    _load_trainables(model, tmp_path)  # a good one loads
    _truncate(f)
    with pytest.raises(CheckpointError, match=rf"^{f}: corrupt safetensors file"):
        _load_trainables(model, tmp_path)


# -- item 6: the feature cache ----------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "garbled", "non-finite"])
def test_feature_cache_recomputes_damaged_files_and_lists_them(tmp_path, damage):
    from tvad.model.tiny import build_tiny
    from tvad.train.features import FeatureCache

    bb = build_tiny(seed=0, max_pixels=112 * 112)
    frames = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    cache = FeatureCache(tmp_path, bb, [0, 2])
    good = cache.get_or_compute("vid", [0, 1, 2, 3], frames)
    p = cache.path("vid", [0, 1, 2, 3])
    if damage == "truncated":
        _truncate(p)
    elif damage == "garbled":
        _garble(p)
    else:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            md, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        t["layer.0"][0, 0, 0, 0] = float("nan")
        save_file(t, str(p), metadata=md)
    again = cache.get_or_compute("vid", [0, 1, 2, 3], frames)
    assert cache.corrupt == [p] and cache.misses == 2
    assert all(torch.equal(good[l], again[l]) for l in (0, 2))
    assert cache.get("vid", [0, 1, 2, 3]) is not None  # rewritten whole


def test_cli_detect_names_the_non_finite_weights_file(model_copy, bikes_mp4, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    f = model_copy / "ahd" / "ahd.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(str(f)).items()}, str(f))
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "tvad.cli", "detect", str(bikes_mp4), "--checkpoint", str(model_copy),
                        "--out", str(tmp_path / "out"), "--device", "cpu"], capture_output=True, text=True,
                       cwd=repo, env=env, timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[0].startswith(
        f"tvad detect: error: cannot load checkpoint {model_copy}: {f}: non-finite weights (NaN/inf) in ")
    assert "Traceback" not in r.stderr
