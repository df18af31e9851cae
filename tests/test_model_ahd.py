"""The AHD, eq. 4-7: shapes, the equations themselves, masks, loss, bad input."""

import pytest
import torch
import torch.nn.functional as F

from tvad.model.ahd import AHD, AHDError, ahd_loss, frame_scores, heat_to_frames, pair_merge


def make(layers=(0, 2), d_in=8, d=6, **kw):
    torch.manual_seed(0)
    a = AHD({l: d_in for l in layers}, d, hidden=16, **kw)
    a.set_text(torch.randn(3, d), torch.randn(3, d))
    return a


def test_equations_4_to_7_by_hand():
    a = make()
    feats = {0: torch.randn(2, 3, 4, 8), 2: torch.randn(2, 3, 4, 8)}
    out = a(feats)
    assert out.logits.shape == (2, 3, 4, 2) and out.heat.shape == (2, 3, 4)
    t = F.normalize(a.text, dim=-1)
    w = a.layer_weights.softmax(0)
    s = sum(w[i] * F.normalize(a.mlps[str(l)](feats[l]), dim=-1) @ t.T for i, l in enumerate((0, 2)))
    assert torch.allclose(out.logits, 100 * s, atol=1e-5)
    assert torch.allclose(out.heat, (100 * s).softmax(-1)[..., 1], atol=1e-6)
    assert ((out.heat >= 0) & (out.heat <= 1)).all()
    assert torch.allclose(w.sum(), torch.tensor(1.0))


def test_text_is_mean_over_templates_and_frozen():
    a = AHD({0: 4}, 5, hidden=8)
    n, ab = torch.randn(7, 5), torch.randn(7, 5)
    a.set_text(n, ab)
    assert torch.allclose(a.text[0], n.mean(0)) and torch.allclose(a.text[1], ab.mean(0))
    assert "text" not in dict(a.named_parameters()) and "text" in a.state_dict()
    with pytest.raises(AHDError):
        a.set_text(torch.randn(7, 4), ab)


def test_learnable_scale_and_raw_weights():
    a = make(learnable_scale=True, layer_weighting="raw")
    assert "log_scale" in dict(a.named_parameters())
    assert torch.allclose(a.mix_weights(), torch.tensor([0.5, 0.5]))
    assert float(a.scale.detach()) == pytest.approx(100.0)


def test_pair_merge_is_or_of_frames_2t_and_2t_plus_1():
    m = torch.zeros(5, 2, 2, dtype=torch.int32)
    m[1, 0, 0] = 3  # only the odd frame of pair 0
    m[4, 1, 1] = 1  # last, unpaired frame: padded with itself
    p = pair_merge(m)
    assert p.shape == (3, 2, 2) and p.dtype == torch.bool
    assert p[0, 0, 0] and p.sum() == 2 and p[2, 1, 1]


def test_upsample_and_frame_scores():
    h = torch.zeros(2, 4, 4)
    h[1, 2, 2] = 1.0
    up = AHD.upsample(h, (16, 16))
    assert up.shape == (2, 16, 16) and up[0].max() == 0
    s = frame_scores(up, "max")
    assert s[0] == 0 and 0.5 < s[1] <= 1.0
    t = frame_scores(up, "topk", topk=4)
    assert t[1] <= s[1]


def test_loss_decreases_and_bad_input_raises():
    a = make()
    torch.manual_seed(1)
    feats = {0: torch.randn(2, 4, 4, 8), 2: torch.randn(2, 4, 4, 8)}
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, :8, :8] = True
    opt = torch.optim.Adam(a.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss = ahd_loss(a, a(feats), masks, pos_weight=2.0, dice_weight=0.5, frame_ce=True)
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(AHDError, match="missing"):
        a({0: feats[0]})
    with pytest.raises(AHDError, match="width"):
        a({0: feats[0], 2: torch.randn(2, 4, 4, 9)})
    with pytest.raises(AHDError, match="non-finite"):
        bad = {0: feats[0].clone(), 2: feats[2]}
        bad[0][0, 0, 0, 0] = float("nan")
        ahd_loss(a, a(bad), masks)
    with pytest.raises(AHDError, match="text"):
        AHD({0: 8}, 6)({0: feats[0]})


def test_heat_to_frames_shares_each_map_with_its_pair():
    heat = torch.zeros(3, 2, 2)
    heat[0, 0, 0] = 1.0  # top-left of pair 0
    heat[1] = 0.5  # pair 1 uniform
    heat[2, 1, 1] = 1.0  # bottom-right of pair 2
    out = heat_to_frames(heat, (8, 10), 5)  # 5 frames: the last pair was padded
    assert out.shape == (5, 8, 10) and out.dtype == torch.float32
    assert torch.equal(out[0], out[1]) and torch.equal(out[2], out[3])  # both frames of a pair
    assert torch.equal(out[0], AHD.upsample(heat[0], (8, 10)))
    assert out[0, 0, 0] > out[0, -1, -1] and out[4, -1, -1] > out[4, 0, 0]  # where the heat was
    assert torch.allclose(out[2], torch.full((8, 10), 0.5))
    assert heat_to_frames(heat, (8, 10), 6).shape[0] == 6 and heat_to_frames(heat, (8, 10), 1).shape[0] == 1
    assert heat_to_frames(heat.double(), (4, 4), 2).dtype == torch.float32


def test_text_separation_bounds_every_heat_value():
    ahd = make()
    n = torch.randn(3, 6)
    a = n + 0.05 * torch.randn(3, 6)  # nearly parallel class texts
    ahd.set_text(n, a)
    sep = ahd.text_separation()
    tn, ta = F.normalize(n.mean(0), dim=0), F.normalize(a.mean(0), dim=0)
    assert sep["text_cos"] == pytest.approx(float(tn @ ta), abs=1e-6)
    assert sep["logit_gap_max"] == pytest.approx(100 * float((ta - tn).norm()), rel=1e-5)
    torch.manual_seed(0)
    feats = {l: 10 * torch.randn(2, 4, 5, 8) for l in (0, 2)}
    for _ in range(3):  # whatever the MLPs do, H stays inside the bound
        for p in ahd.mlps.parameters():
            p.data.normal_(0, 3)
        h = ahd(feats).heat
        assert sep["heat_min"] - 1e-6 <= float(h.min()) and float(h.max()) <= sep["heat_max"] + 1e-6
    assert 0 < sep["heat_min"] < 0.5 < sep["heat_max"] < 1
