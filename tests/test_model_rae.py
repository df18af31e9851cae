"""The RAE (eq. 8–12): shapes, the H_0 = 0 difference, region locality, variants, bad input."""

from __future__ import annotations

import pytest
import torch

from tvad.model.rae import RegionAwareAnomalyEncoder, new_rae, rae_kwargs


@pytest.mark.parametrize("variant,grid,num_base", [("paper", 3, 4), ("paper", 2, 1), ("released", 3, 4)])
def test_output_shape(variant, grid, num_base):
    torch.manual_seed(0)
    rae = RegionAwareAnomalyEncoder(hidden_size=32, channels=8, grid=grid, num_base=num_base, variant=variant)
    P = rae(torch.rand(5, 14, 10))
    assert P.shape == (5, rae.num_prompts, 32)
    expect = (num_base if variant == "paper" else 0) + grid * grid + 1
    assert rae.num_prompts == expect and torch.isfinite(P).all()


def test_first_step_sees_the_heatmap_itself_and_static_maps_vanish_later():
    # eq. 8 with H_0 = 0: a static heatmap gives dH_1 = H_1 and dH_t = 0 for t > 1, so steps 2.. equal
    # the prompts of an all-zero heatmap, while step 1 differs from them.
    torch.manual_seed(0)
    rae = RegionAwareAnomalyEncoder(hidden_size=16, channels=4)
    H = torch.zeros(3, 12, 12)
    H[:, 2:6, 2:6] = 1.0
    P = rae(H)
    Z = rae(torch.zeros(3, 12, 12))
    torch.testing.assert_close(P[1:], Z[1:])
    assert (P[0] - Z[0]).abs().max() > 1e-4


def test_regions_are_local_in_the_paper_variant():
    # heat in the top-left corner changes the top-left region prompt far more than the bottom-right one
    torch.manual_seed(0)
    rae = RegionAwareAnomalyEncoder(hidden_size=16, channels=4, conv_layers=1, grid=3, num_base=2)
    H0 = torch.zeros(1, 18, 18)
    H1 = H0.clone()
    H1[0, :4, :4] = 1.0
    d = (rae(H1) - rae(H0))[0].norm(dim=-1)  # (num_prompts,)
    top_left, bottom_right = d[2 + 0], d[2 + 8]
    assert top_left > 10 * max(bottom_right.item(), 1e-8)
    assert torch.equal(rae(H1)[0, :2], rae(H0)[0, :2])  # base prompts do not depend on the input


def test_bad_input():
    rae = RegionAwareAnomalyEncoder(hidden_size=8, channels=2)
    with pytest.raises(ValueError, match=r"\(T, h, w\)"):
        rae(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        rae(torch.full((2, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="unknown RAE variant"):
        RegionAwareAnomalyEncoder(hidden_size=8, variant="other")


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_zero_bias_init_makes_region_prompts_pure_evidence(variant):
    torch.manual_seed(0)
    rae = RegionAwareAnomalyEncoder(hidden_size=16, channels=4, variant=variant)  # init="zero_bias" default
    nb = rae.num_base if variant == "paper" else 0
    P0 = rae(torch.zeros(3, 8, 8))
    hot = torch.zeros(3, 8, 8)
    hot[0, 2:5, 2:5] = 1.0
    P1 = rae(hot)
    if variant == "paper":  # no heatmap change: region and global prompts exactly 0, base prompts stay
        assert torch.equal(P0[:, nb:], torch.zeros_like(P0[:, nb:])) and P0[:, :nb].abs().sum() > 0
    else:  # released: the base prompt is added to every prompt, so only it remains
        assert torch.allclose(P0, rae.base.mean(0).expand_as(P0))
    assert (P1[0, nb:] - P0[0, nb:]).abs().sum() > 0  # the hot frame changes its prompts
    assert (P1[1] != P0[1]).any() and torch.equal(P1[2], P0[2])  # dH_2 = -H_1 is evidence too, dH_3 = 0 not
    dflt = RegionAwareAnomalyEncoder(hidden_size=16, channels=4, variant=variant, init="default")
    assert dflt(torch.zeros(3, 8, 8))[:, nb:].abs().sum() > 0
    with pytest.raises(ValueError, match="init"):
        RegionAwareAnomalyEncoder(hidden_size=8, init="xavier")


def test_init_gain_scales_the_region_and_global_prompts_only():
    hot = torch.rand(3, 8, 8)
    torch.manual_seed(0)
    one = RegionAwareAnomalyEncoder(hidden_size=16, channels=4)
    torch.manual_seed(0)
    six = RegionAwareAnomalyEncoder(hidden_size=16, channels=4, init_gain=6.0)
    a, b = one(hot), six(hot)
    nb = one.num_base
    assert torch.equal(a[:, :nb], b[:, :nb])  # base prompts untouched
    assert torch.allclose(b[:, nb:], 6.0 * a[:, nb:], atol=1e-5)  # zero biases: the output scales exactly
    assert rae_kwargs(six)["init_gain"] == 6.0  # saved with the checkpoint's RAE settings


def test_new_rae_seeds_only_when_asked():
    """Stage 2's fresh RAE is seeded right before construction; restoring a checkpoint leaves the RNG alone."""
    kw = rae_kwargs({"channels": 4, "grid": 2, "num_base": 3, "unknown": 1})
    assert kw == {"channels": 4, "grid": 2, "num_base": 3}  # only the constructor's settings
    torch.manual_seed(0)
    ref = RegionAwareAnomalyEncoder(hidden_size=16, **kw)
    torch.manual_seed(123)
    a = new_rae(16, kw, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), a.state_dict().values()))
    torch.manual_seed(7)
    state = torch.get_rng_state()
    b = new_rae(16, kw)  # unseeded: draws from the current RNG
    torch.set_rng_state(state)
    c = RegionAwareAnomalyEncoder(hidden_size=16, **kw)
    assert all(torch.equal(p, q) for p, q in zip(b.state_dict().values(), c.state_dict().values()))
    assert not torch.equal(a.base, b.base)
    assert rae_kwargs(a) == {**kw, "conv_layers": 2, "variant": "paper", "init": "zero_bias", "init_gain": 1.0}
