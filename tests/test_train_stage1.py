"""Stage 1: training on planted features, best-by-val, kill + resume = same weights, the cache."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tvad.config import EvalConfig, Stage1Config
from tvad.train.common import Killed
from tvad.model.ahd import load_ahd
from tvad.train.stage1 import evaluate, train
from launch_fixtures import accelerate_launch
from stage1_fixtures import fresh_ahd, planted  # noqa: F401  (fresh_ahd: also for the launched script)


CFG = Stage1Config(epochs=3, grad_accum=3, lr=1e-2, min_lr=1e-4, clip_frames=4, seed=0)


def test_training_learns_and_keeps_best(tmp_path):
    tr, va = planted(6, 0), planted(4, 1)
    a = fresh_ahd()
    before, _ = evaluate(a, va, EvalConfig())
    res = train(a, tr, va, CFG, tmp_path, eval_cfg=EvalConfig(), meta={"backbone": {"identity": "x", "layers": [0, 1]}},
                progress=False)
    after, heat = evaluate(a, va, EvalConfig(), per_type=True)
    assert before["micro_auc"] < 0.9
    assert after["micro_auc"] > 0.9
    assert heat["v1_0"].shape == (8, 32, 32) and heat["v1_0"].dtype == np.float32
    assert "per_type.a.micro_auc" in after and {"rbdc", "tbdc", "op.rbdr"} <= set(after)
    assert len(res.history) == 3 * 4  # 6 videos x 2 clips of 4 frames = 12 clips / accum 3 = 4 steps/epoch
    best_auc = max(r["micro_auc"] for r in res.val_history)
    b, meta = load_ahd(res.best_dir, backbone_identity="x", layers=[0, 1])
    assert meta["val"]["micro_auc"] == best_auc
    with pytest.raises(ValueError, match="backbone"):
        load_ahd(res.best_dir, backbone_identity="other")
    with pytest.raises(ValueError, match="blocks"):
        load_ahd(res.best_dir, backbone_identity="x", layers=[0, 3])
    lrs = [r["lr"] for r in res.history]
    assert max(lrs) == pytest.approx(CFG.lr) and lrs[-1] == pytest.approx(CFG.min_lr, rel=1e-3)


def test_kill_and_resume_gives_the_same_final_weights(tmp_path):
    tr, va = planted(6, 0), planted(4, 1)
    a = fresh_ahd()
    train(a, tr, va, CFG, tmp_path / "full", eval_cfg=EvalConfig(), progress=False, checkpoint_every=2)
    b = fresh_ahd()
    with pytest.raises(Killed):
        train(b, tr, va, CFG, tmp_path / "split", eval_cfg=EvalConfig(), progress=False, checkpoint_every=2,
              stop_after_steps=5)
    torch.manual_seed(123)  # a different process state: resume must restore everything it needs
    c = fresh_ahd()
    for p in c.parameters():
        p.data.add_(1.0)  # garbage weights: the checkpoint must overwrite them
    res = train(c, tr, va, CFG, tmp_path / "split", eval_cfg=EvalConfig(), progress=False, checkpoint_every=2,
                resume=True)
    for k, v in a.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k
    assert len(res.history) == 3 * 4 and [r["step"] for r in res.history] == list(range(1, 13))


def test_feature_cache_never_serves_stale_keys(tmp_path):
    from tvad.model.tiny import build_tiny
    from tvad.train.features import FeatureCache, FeatureCacheError

    bb = build_tiny(seed=0, max_pixels=112 * 112)
    frames = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    cache = FeatureCache(tmp_path, bb, [0, 2])
    f1 = cache.get_or_compute("vid", [0, 1, 2, 3], frames)
    f2 = cache.get_or_compute("vid", [0, 1, 2, 3], lambda: pytest.fail("recomputed a cached entry"))
    assert cache.hits == 1 and cache.misses == 1
    assert all(torch.equal(f1[l], f2[l]) for l in (0, 2)) and f1[0].shape == (2, 8, 8, 128)
    assert cache.get("vid", [0, 1, 2, 4]) is None  # other frames
    assert FeatureCache(tmp_path, bb, [0, 1]).get("vid", [0, 1, 2, 3]) is None  # other layers
    other = build_tiny(seed=1, max_pixels=112 * 112)
    assert other.identity != bb.identity
    assert FeatureCache(tmp_path, other, [0, 2]).get("vid", [0, 1, 2, 3]) is None  # other backbone
    # a file whose content belongs to another key (renamed / tampered) is not served, nor silently
    # recomputed: an error naming the file and both videos' frame lists
    p = cache.path("vid", [0, 1, 2, 3])
    cache.put("zzz", [0, 1, 2, 3], f1)
    os.replace(cache.path("zzz", [0, 1, 2, 3]), p)
    with pytest.raises(FeatureCacheError, match=rf"^{p}: holds other frames than requested: frames \[0, 1, 2, 3\] "
                                                 r"of 'zzz', asked for frames \[0, 1, 2, 3\] of 'vid'"):
        cache.get("vid", [0, 1, 2, 3])
    p.write_bytes(b"garbage")
    assert cache.get("vid", [0, 1, 2, 3]) is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    from tvad.train.stage1 import ResumeMismatch

    tr, va = planted(4, 0), planted(2, 1)
    train(fresh_ahd(), tr, va, CFG, tmp_path, progress=False)
    other = Stage1Config(**{**CFG.__dict__, "epochs": 5})
    with pytest.raises(ResumeMismatch, match="steps"):
        train(fresh_ahd(), tr, va, other, tmp_path, progress=False, resume=True)


def test_select_by_last_keeps_the_final_weights(tmp_path):
    tr, va = planted(4, 0), planted(2, 1)
    a = fresh_ahd()
    res = train(a, tr, va, Stage1Config(**{**CFG.__dict__, "select_by": "last"}), tmp_path, progress=False)
    b, meta = load_ahd(res.best_dir)
    assert meta["epoch"] == CFG.epochs
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_train_runs_on_the_given_accelerator(tmp_path, monkeypatch):
    """`train` prepares the AHD and optimizer on the Accelerator it is given, and a single process
    reaches exactly the weights of the default (own Accelerator) run."""
    from accelerate import Accelerator

    tr, va = planted(4, 0), planted(2, 1)
    a = fresh_ahd()
    train(a, tr, va, CFG, tmp_path / "default", progress=False)
    acc = Accelerator()  # this process's device (the state is per process: no cpu=True after a GPU run)
    prepared = []
    real = acc.prepare
    monkeypatch.setattr(acc, "prepare", lambda *objs: prepared.append(objs) or real(*objs))
    b = fresh_ahd()
    res = train(b, tr, va, CFG, tmp_path / "given", progress=False, accelerator=acc)
    assert len(prepared) == 1 and prepared[0][0] is b and isinstance(prepared[0][1], torch.optim.AdamW)
    assert b.text.device == acc.device and len(res.history) == 3 * 3  # 8 clips / accum 3 = 3 steps/epoch
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        train(fresh_ahd(), tr, va, CFG, tmp_path / "bad", progress=False,
              accelerator=Accelerator(gradient_accumulation_steps=2))


LAUNCHED = r'''
"""Run by `accelerate launch` (test_train_stage1.py): stage 1 on planted features in several processes."""
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch.optim.optimizer import register_optimizer_step_pre_hook

sys.path.insert(0, sys.argv[2])  # the tests folder: planted(), fresh_ahd()
import tvad.train.stage1 as s1
from test_train_stage1 import _mp_cases, fresh_ahd
from tvad.config import EvalConfig

out = Path(sys.argv[1])
acc = Accelerator()
rank = acc.process_index
saves = []
real_save = s1.save_ahd
s1.save_ahd = lambda ahd, path, meta, **kw: saves.append(Path(path).relative_to(out).as_posix()) or real_save(ahd, path, meta, **kw)
runs, grads, current = {}, {}, [None]


def record_grads(opt, args, kwargs):  # the gradient each optimizer step applies (after DDP's average)
    grads.setdefault(current[0], []).append(torch.cat([p.grad.flatten() for g in opt.param_groups for p in g["params"]]))


register_optimizer_step_pre_hook(record_grads)
for name, tr, va, cfg, kw in _mp_cases():
    current[0] = name
    a = fresh_ahd()
    if kw.get("stop_after_steps"):
        try:
            s1.train(a, tr, va, cfg, out / name, eval_cfg=EvalConfig(), progress=False, accelerator=acc, **kw)
            raise SystemExit("not killed")
        except s1.Killed:
            a = fresh_ahd()
            kw = {**kw, "stop_after_steps": None, "resume": True}
    res = s1.train(a, tr, va, cfg, out / name, eval_cfg=EvalConfig(), progress=False, accelerator=acc, **kw)
    runs[name] = {"history": res.history, "val_history": res.val_history, "best": res.best}
(out / f"rank{rank}.json").write_text(json.dumps({
    "rank": rank, "num_processes": acc.num_processes, "distributed_type": str(acc.distributed_type),
    "backend": dist.get_backend() if dist.is_initialized() else None, "device": str(acc.device),
    "pid": os.getpid(), "saves": saves, "runs": runs}, default=float))
torch.save(grads, out / f"grads{rank}.pt")
'''


def _mp_cases():
    """(name, train, val, cfg, kwargs): equal-sized clips (one batched pass) in groups of 5, 5, 2 split
    3/2 and 1/1 over 2 processes, also killed after 5 steps and resumed; mixed clip shapes (per-clip
    passes) in groups of 3 split 2/1 (the second process adds a pass of weight 0) and a last group of
    one clip (the second process joins with weight 0), without validation."""
    tr, va = planted(6, 0), planted(4, 1)
    mixed = planted(3, 0) + planted(3, 2, T=3, S=24) + planted(1, 3, T=1, S=16)  # 6 + 6 + 1 = 13 clips
    c5 = Stage1Config(**{**CFG.__dict__, "grad_accum": 5})
    c3 = Stage1Config(**{**CFG.__dict__, "dice_weight": 0.5})  # grad_accum 3: groups 3, 3, 3, 3, 1
    return [("equal", tr, va, c5, {}), ("resumed", tr, va, c5, {"stop_after_steps": 5, "checkpoint_every": 2}),
            ("mixed", mixed, [], c3, {})]


def test_two_process_accelerate_launch_matches_one_process(tmp_path, monkeypatch):
    """A real `accelerate launch` of 2 CPU processes (torch.distributed, gloo): the group split and
    the loss scaling give the one-process weights (up to reduction order), only rank 0 writes
    checkpoints, both ranks return the same result, and kill + resume is exact."""
    import json
    import shutil
    from pathlib import Path

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    import tvad.train.stage1 as s1

    here = Path(__file__).resolve().parent
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    p = accelerate_launch(tmp_path, script, str(tmp_path / "mp"), str(here), timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    ranks = [json.loads((tmp_path / "mp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["pid"] != ranks[1]["pid"]
    assert all(r["num_processes"] == 2 and r["distributed_type"].endswith("MULTI_CPU") and r["backend"] == "gloo"
               for r in ranks), ranks
    assert ranks[1]["saves"] == [] and json.dumps(ranks[0]["runs"]) == json.dumps(ranks[1]["runs"])

    # the same runs in this (single) process
    saves, grads = [], {}
    real_save = s1.save_ahd
    monkeypatch.setattr(s1, "save_ahd", lambda ahd, path, meta, **kw: saves.append(
        Path(path).relative_to(tmp_path / "sp").as_posix()) or real_save(ahd, path, meta, **kw))
    mp_grads = [torch.load(tmp_path / "mp" / f"grads{r}.pt") for r in (0, 1)]
    for name, tr, va, cfg, kw in _mp_cases():
        if name == "resumed":
            continue
        a = fresh_ahd()
        hook = register_optimizer_step_pre_hook(
            lambda opt, args, kwargs: grads.setdefault(name, []).append(
                torch.cat([p.grad.flatten() for g in opt.param_groups for p in g["params"]])))
        try:
            res = train(a, tr, va, cfg, tmp_path / "sp" / name, eval_cfg=EvalConfig(), progress=False, **kw)
        finally:
            hook.remove()
        # each step's gradient is that of the whole group's mean loss, on both ranks
        assert len(grads[name]) == len(mp_grads[0][name]) == len(res.history)
        for g1, g0, g in zip(mp_grads[1][name], mp_grads[0][name], grads[name]):
            assert torch.equal(g0, g1) and torch.allclose(g0, g, rtol=1e-3, atol=1e-6), (name, (g0 - g).abs().max())
        mp = ranks[0]["runs"][name]
        assert [h["step"] for h in mp["history"]] == [h["step"] for h in res.history]
        assert np.allclose([h["loss"] for h in mp["history"]], [h["loss"] for h in res.history], rtol=1e-4, atol=1e-6)
        for d in ("last", "best"):
            b, _ = load_ahd(tmp_path / "mp" / name / d)
            c, _ = load_ahd(tmp_path / "sp" / name / d)
            for k, v in c.state_dict().items():
                assert torch.allclose(b.state_dict()[k], v, atol=1e-4, rtol=1e-4), (name, d, k)
        assert (tmp_path / "mp" / name / "history.json").exists()
        assert not list((tmp_path / "mp" / name).rglob("*.tmp"))
    # rank 0 wrote the checkpoints a single process writes, once each (the killed run's extra `last`s aside)
    assert [s for s in ranks[0]["saves"] if not s.startswith("resumed/")] == saves
    # kill + resume under 2 processes reaches exactly the uninterrupted 2-process weights
    e, _ = load_ahd(tmp_path / "mp" / "equal" / "last")
    r, _ = load_ahd(tmp_path / "mp" / "resumed" / "last")
    assert all(torch.equal(v, r.state_dict()[k]) for k, v in e.state_dict().items())
    assert ranks[0]["runs"]["resumed"]["history"] == ranks[0]["runs"]["equal"]["history"]
    shutil.rmtree(tmp_path / "hf", ignore_errors=True)


def test_training_on_lazy_samples_is_bit_identical_to_eager_samples(tmp_path):
    """Stage 1 on `prepare`'s lazy Samples (features and masks read from the cache files when used,
    an LRU of 0 bytes: every read from disk) reaches exactly the weights of the same run on Samples
    holding the eagerly computed fp16 features and pair-merged masks in memory (the pre-lazy form)."""
    from test_train_features import make_videos
    from tvad.config import AHDConfig
    from tvad.model.ahd import pair_merge
    from tvad.model.build import build_ahd
    from tvad.model.tiny import build_tiny
    from tvad.train.features import FeatureCache, LazyFeatures
    from tvad.train.stage1 import Sample, prepare

    bb = build_tiny(seed=0, max_pixels=112 * 112)
    vids = make_videos(tmp_path, k=5, n=8)
    layers = [1, 3]
    lazy = prepare(vids, FeatureCache(tmp_path / "cache", bb, layers, memory_bytes=0), progress=False)
    eager = []
    for v, s in zip(vids, lazy):
        f = bb.visual_features(np.asarray(v.read_frames()), layers, fps=v.fps).features
        eager.append(Sample(s.name, {l: f[l].to(torch.float16) for l in layers},
                            pair_merge(torch.from_numpy(v.read_masks())), s.frame_labels, s.gt_tracks, s.num_frames,
                            s.frame_size, s.anomaly_type))
    assert isinstance(lazy[0].features, LazyFeatures)
    cfg = Stage1Config(epochs=2, grad_accum=2, lr=1e-2, min_lr=1e-4, clip_frames=4, seed=0)
    weights = []
    for i, samples in enumerate((eager, lazy)):
        ahd = build_ahd(bb, AHDConfig(hidden=16, num_templates=2), layers, seed=0)
        res = train(ahd, samples[:3], samples[3:], cfg, tmp_path / f"run{i}", eval_cfg=EvalConfig(), progress=False)
        weights.append((ahd.state_dict(), [r["loss"] for r in res.history], res.val_history))
    (wa, la, va), (wb, lb, vb) = weights
    assert la == lb and len(la) == 2 * 3
    np.testing.assert_equal(va, vb)  # NaN-tolerant (RBDC of a split without regions)
    assert all(np.isfinite(r["micro_auc"]) for r in va)
    assert len(la) == 2 * 3  # 3 videos x 2 clips / accum 2 = 3 steps/epoch
    for k, v in wa.items():
        assert torch.equal(v, wb[k]), k
