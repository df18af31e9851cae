"""Stage 1: training on planted features, best-by-val, kill + resume = same weights, the cache."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tvad.config import AHDConfig, EvalConfig, Stage1Config
from tvad.model.ahd import AHD, pair_merge
from tvad.train.stage1 import Killed, Sample, evaluate, load_ahd, train


def planted(n_videos, seed, T=4, h=4, w=4, D=8, S=32):
    """Videos whose anomalous patches carry a fixed feature direction."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.ones(D)
    out = []
    for v in range(n_videos):
        masks = torch.zeros(2 * T, S, S, dtype=torch.int32)
        feats = torch.randn(T, h, w, D, generator=g) * 0.5
        if v % 2 == 0:
            for t in range(1, T):
                y, x = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
                feats[t, y, x] += 2 * direction
                masks[2 * t: 2 * t + 2, y * 8:(y + 1) * 8, x * 8:(x + 1) * 8] = 1
        labels = (masks.flatten(1).amax(1) > 0).numpy().astype(int)
        from tvad.metrics import tracks_from_masks
        out.append(Sample(name=f"v{seed}_{v}", features={0: feats.half(), 1: (feats * 0.5).half()},
                          masks=pair_merge(masks), frame_labels=labels, gt_tracks=tracks_from_masks(masks.numpy()),
                          num_frames=2 * T, frame_size=(S, S), anomaly_type="a" if v % 2 == 0 else "normal"))
    return out


def fresh_ahd():
    torch.manual_seed(0)
    a = AHD({0: 8, 1: 8}, 8, hidden=16)
    a.set_text(torch.randn(4, 8), torch.randn(4, 8))
    return a


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
    from tvad.model.backbone import build_tiny
    from tvad.train.features import FeatureCache

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
    # a file whose content belongs to another key (renamed / tampered) is not served
    p = cache.path("vid", [0, 1, 2, 3])
    cache.put("zzz", [0, 1, 2, 3], f1)
    os.replace(cache.path("zzz", [0, 1, 2, 3]), p)
    assert cache.get("vid", [0, 1, 2, 3]) is None
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
