"""The tiny backbone's pretraining: runs, is deterministic, and loads like any Qwen2.5-VL."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tvad.train.pretrain_tiny import PretrainConfig, chat_inputs, grounding_targets, motion_targets, pretrain


def videos(n=2, N=8, S=112):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        f = np.full((N, S, S, 3), 90, np.uint8)
        y, v = int(rng.integers(10, 70)), int(rng.integers(2, 6))
        boxes = np.zeros((N, 4), np.int64)
        for t in range(N):
            f[t, y:y + 28, 4 + v * t: 18 + v * t] = (200, 50, 50)
            boxes[t] = (4 + v * t, y, 18 + v * t, y + 28)
        phases = [(0, N // 2 - 1, "walking"), (N // 2, N - 1, "running")]
        out.append({"name": f"v{i}", "frames": f, "caption": f"A person in red runs right at speed {v}.", "fps": 8.0,
                    "phases": [(s, e, b, np.ones(N, bool)) for s, e, b in phases], "boxes": [(boxes, phases)]})
    return out


def test_motion_targets_see_motion_without_masks():
    v = videos(1)[0]
    bg = np.median(v["frames"], axis=0).astype(np.uint8)
    t = motion_targets(v["frames"], bg)
    assert t.shape == (4, 8, 8, 2)
    assert t[..., 0].max() > 0.5 and t[0, 7, 7, 0] == 0  # moving patches vs the empty corner
    assert (t[..., 1] > 0).sum() < t[..., 1].numel() / 2


def test_grounding_targets_name_the_behaviour_under_each_box():
    v = videos(1)[0]
    vocab = ["running", "walking"]
    g = grounding_targets(v, 0, 8, vocab, (112, 112), (8, 8))  # 14 px patches
    assert g.shape == (4, 8, 8) and g.dtype == torch.long
    x1, y1, x2, y2 = v["boxes"][0][0][0]
    assert set(g[0].unique().tolist()) == {0, 2} and set(g[3].unique().tolist()) == {0, 1}  # walking, then running
    on = (g[0] == 2).nonzero()
    # every labelled patch overlaps the box of frame 0 or 1; the empty far corner is "nothing"
    b1 = v["boxes"][0][0][1]
    assert ((on[:, 1] * 14 + 14 > min(x1, b1[0])) & (on[:, 1] * 14 < max(x2, b1[2]))).all()
    assert ((on[:, 0] * 14 + 14 > y1) & (on[:, 0] * 14 < y2)).all()
    assert g[:, 7, 7].eq(0).all()
    # a behaviour outside the vocabulary, or a box that is not visible (-1), labels nothing
    assert grounding_targets(v, 0, 8, ["falling"], (112, 112), (8, 8)).eq(0).all()
    hidden = {"boxes": [(np.full((8, 4), -1), [(0, 7, "running")])]}
    assert grounding_targets(hidden, 0, 8, vocab, (112, 112), (8, 8)).eq(0).all()
    # boxes scale with the grid: the same clip on a 16 x 16 grid labels ~4x the patches
    g16 = grounding_targets(v, 0, 8, vocab, (112, 112), (16, 16))
    assert 3 <= int((g16[0] > 0).sum()) / int((g[0] > 0).sum()) <= 5


def test_pretrain_is_deterministic_and_reloads(tmp_path):
    from tvad.model.backbone import from_pretrained

    kw = dict(steps=3, clip_frames=4, warmup=1, vocab_size=400, log_every=1)
    a = pretrain(PretrainConfig(out=str(tmp_path / "a"), **kw), videos(), log=lambda s: None)
    b = pretrain(PretrainConfig(out=str(tmp_path / "b"), **kw), videos(), log=lambda s: None)
    bb_a, bb_b = from_pretrained(a), from_pretrained(b)
    for k, v in bb_a.model.state_dict().items():
        assert torch.equal(v, bb_b.model.state_dict()[k]), k
    log = [json.loads(l) for l in (a / "training_log.jsonl").read_text().splitlines()]
    assert log[0]["config"]["steps"] == 3 and [r["step"] for r in log[1:]] == [0, 1, 2]
    assert all(np.isfinite(r["caption_loss"]) for r in log[1:])
    assert all(r["grounding_loss"] > 0 for r in log[2:])  # the grounding probes ran on the boxes
    assert sum(f.stat().st_size for f in a.glob("*.safetensors")) < 20 * 2**20
    ci = chat_inputs(bb_a, "a caption", torch.tensor([[2, 8, 8]]))
    assert int((ci["mm_token_type_ids"] == 2).sum()) == 2 * 8 * 8 // 4
    assert (ci["labels"] != -100).sum() == len(bb_a.tokenizer("a caption<|im_end|>")["input_ids"])


def test_vision_from_copies_and_freezes_the_vit_and_embeddings(tmp_path):
    from tvad.model.backbone import from_pretrained

    kw = dict(clip_frames=4, warmup=1, vocab_size=400, log_every=1)
    a = pretrain(PretrainConfig(out=str(tmp_path / "a"), steps=2, **kw), videos(), log=lambda s: None)
    b = pretrain(PretrainConfig(out=str(tmp_path / "b"), steps=2, text_layers=3, vision_from=str(a), seed=1, **kw),
                 videos(), log=lambda s: None)
    bb_a, bb_b = from_pretrained(a), from_pretrained(b)
    va, vb = bb_a.visual.state_dict(), bb_b.visual.state_dict()
    assert va.keys() == vb.keys() and all(torch.equal(va[k], vb[k]) for k in va)  # copied, then frozen
    assert torch.equal(bb_a.model.get_input_embeddings().weight, bb_b.model.get_input_embeddings().weight)
    assert bb_b.model.config.text_config.num_hidden_layers == 3
    la = bb_a.model.model.language_model.layers[0].self_attn.q_proj.weight
    lb = bb_b.model.model.language_model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(la, lb)  # the decoder is new and trained
    with pytest.raises(Exception, match="size|shape|embedding"):
        pretrain(PretrainConfig(out=str(tmp_path / "c"), steps=1, vision_hidden=64, vision_from=str(a), **kw),
                 videos(), log=lambda s: None)


def test_anomaly_targets_mark_anomaly_types_including_held_out_ones():
    from tvad.train.pretrain_tiny import anomaly_targets

    vocab = ["abandoned_object", "jaywalking", "running", "walking"]
    g = torch.tensor([[[0, 1, 2], [3, 4, 0]]])  # nothing, abandoned, jaywalking / running, walking, nothing
    assert anomaly_targets(g, vocab).tolist() == [[[0, 2, 2], [2, 1, 0]]]


def test_class_text_is_the_eq2_mean_and_carries_gradient():
    from tvad.train.pretrain_tiny import class_text

    emb = torch.nn.Embedding(10, 4)
    ids = torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6], [7, 8, 0]])
    mask = (ids > 0).long()
    t = class_text(emb, ids, mask, 2)
    w = emb.weight
    want_n = ((w[1] + w[2]) / 2 + w[3]) / 2
    want_a = ((w[4] + w[5] + w[6]) / 3 + (w[7] + w[8]) / 2) / 2
    assert torch.allclose(t[0], want_n) and torch.allclose(t[1], want_a)
    t[1].sum().backward()
    assert emb.weight.grad[4].abs().sum() > 0 and emb.weight.grad[1].abs().sum() == 0
