"""The Region-aware Anomaly Encoder (RAE): heatmaps in, prompt embeddings out (paper eq. 8–12).

    rae = RegionAwareAnomalyEncoder(hidden_size=D_p, channels=64, grid=3, num_base=4)
    P = rae(H)          # H: (T, h, w) heatmaps in [0, 1]  ->  P: (T, n_base + G*G + 1, D_p)

The prompts replace placeholder-token rows of the decoder's input embeddings (eq. 13, in
`tvad.model.tvad`).

Which heatmap the RAE reads: the AHD's heatmap of the clip comes on the patch grid of the frames at
the backbone's `max_pixels` (`tvad.model.detector.clip_heatmap`: the grid stage 1 trained the AHD
on, and the one `detect` shows), while the decoder's video tokens may come from frames shrunk to
the stage-2 video token budget (a smaller patch grid). The RAE's input H of eq. 8-12 is that
heatmap resampled to the video token (patch) grid, in one place: `heatmap_on_token_grid`, which
`PromptInjector.prompts` (tvad.model.tvad) applies to every heatmap it is handed, given the clip's
`video_grid_thw`. Area averaging (each token-grid cell the area-weighted mean of the heat it
covers, as the oracle's `ground_truth_heatmap` pools masks); the identity when the grids agree (no budget, the cpu
preset), so the prompts' regions (eq. 10) cover the same pixels as the video tokens beside them. `variant="released"` gives the authors' earlier public code instead (ReLU,
nine soft-attention regions, base prompt added rather than concatenated); the paper is the default.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RegionAwareAnomalyEncoder(nn.Module):
    def __init__(self, hidden_size: int, channels: int = 64, conv_layers: int = 2, grid: int = 3,
                 num_base: int = 4, variant: str = "paper", init: str = "zero_bias", init_gain: float = 1.0):
        super().__init__()
        if variant not in ("paper", "released"):
            raise ValueError(f"unknown RAE variant {variant!r}: 'paper' or 'released'")
        if init not in ("zero_bias", "default"):
            raise ValueError(f"unknown RAE init {init!r}: 'zero_bias' or 'default'")
        self.variant, self.grid, self.num_base, self.hidden_size = variant, grid, num_base, hidden_size
        self.init, self.init_gain = init, float(init_gain)
        act = nn.GELU if variant == "paper" else nn.ReLU
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(conv_layers):  # eq. 9: f = a light stack of Conv2d + GELU
            layers += [nn.Conv2d(c_in, channels, kernel_size=3, padding=1), act()]
            c_in = channels
        self.f = nn.Sequential(*layers)
        self.region_mlp = nn.Sequential(nn.Linear(channels, hidden_size), act(),  # eq. 10: MLP per region
                                        nn.Linear(hidden_size, hidden_size))
        self.global_mlp = nn.Sequential(nn.Linear(channels, hidden_size), act(),  # eq. 11: MLP_g
                                        nn.Linear(hidden_size, hidden_size))
        self.base = nn.Parameter(torch.randn(num_base, hidden_size) * 0.02)  # eq. 12: P_base
        if variant == "released":
            # nine (G*G) learned soft-attention maps over the feature map instead of a fixed grid
            self.region_logits = nn.Conv2d(channels, grid * grid, kernel_size=1)
        if init == "zero_bias":
            # The paper leaves the initialisation open. With torch's default biases the prompts are
            # mostly a constant (|P_reg| 0.68 for a zero heatmap, 0.69 for U(0, 0.1) noise on the tiny
            # backbone), the heatmap's part ~1 % of it, and stage 2 on the cpu preset never learned
            # to read it (Yes/No on the training clips stayed at chance). With zero biases dH = 0 gives
            # P_reg = P_glob = 0 (GELU(0) = 0), so at the start every region/global prompt is evidence
            # and P_base carries the constant part (measured: training-clip Yes/No 0.50 -> 0.83).
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.init_gain != 1.0:
            # Scale the last layer of eq. 10's and eq. 11's MLPs at initialisation (paper: unspecified),
            # to bring the region/global prompts towards the decoder's embedding scale.
            with torch.no_grad():
                for mlp in (self.region_mlp, self.global_mlp):
                    mlp[-1].weight.mul_(self.init_gain)

    @property
    def num_prompts(self) -> int:
        """Prompts per temporal step: n_base + G*G + 1 ("paper"), G*G + 1 ("released": base added)."""
        return (self.num_base if self.variant == "paper" else 0) + self.grid * self.grid + 1

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """heatmaps (T, h, w) in [0, 1] -> prompts (T, num_prompts, D_p)."""
        if heatmaps.dim() != 3:
            raise ValueError(f"RAE expects heatmaps (T, h, w), got shape {tuple(heatmaps.shape)}")
        if not torch.isfinite(heatmaps).all():
            raise ValueError("RAE received NaN or infinite heatmap values")
        H = heatmaps.to(self.base.dtype)
        dH = H - torch.cat([torch.zeros_like(H[:1]), H[:-1]], dim=0)  # eq. 8: dH_t = H_t - H_{t-1}, H_0 = 0
        R = self.f(dH.unsqueeze(1))  # eq. 9: R_t = f(dH_t), (T, C, h, w)
        T = R.shape[0]
        if self.variant == "paper":
            pooled = F.adaptive_avg_pool2d(R, self.grid)  # eq. 10: G x G regions, (T, C, G, G)
            regions = pooled.flatten(2).transpose(1, 2)  # (T, G*G, C), raster order top-left .. bottom-right
        else:
            att = self.region_logits(R).flatten(2).softmax(-1)  # (T, G*G, h*w) soft regions
            regions = att @ R.flatten(2).transpose(1, 2)  # (T, G*G, C)
        P_reg = self.region_mlp(regions)  # eq. 10: (T, G*G, D_p)
        P_glob = self.global_mlp(R.mean(dim=(2, 3))).unsqueeze(1)  # eq. 11: (T, 1, D_p)
        if self.variant == "paper":
            base = self.base.unsqueeze(0).expand(T, -1, -1)
            return torch.cat([base, P_reg, P_glob], dim=1)  # eq. 12: [P_base; P_reg; P_glob]
        return torch.cat([P_reg, P_glob], dim=1) + self.base.mean(0)  # released: base prompt added


def area_weights(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in) float64: row i the fractions of output cell i ([i/n_out, (i+1)/n_out] of the
    frame) covered by each input cell ([j/n_in, (j+1)/n_in]); rows sum to 1. Equal sizes: identity;
    an integer ratio k: the mean of k cells."""
    e_out = torch.arange(n_out + 1, dtype=torch.float64) / n_out
    e_in = torch.arange(n_in + 1, dtype=torch.float64) / n_in
    lo = torch.maximum(e_out[:-1, None], e_in[None, :-1])
    hi = torch.minimum(e_out[1:, None], e_in[None, 1:])
    return (hi - lo).clamp_min(0) * n_out


def heatmap_on_token_grid(heat: torch.Tensor, size) -> torch.Tensor:
    """The RAE's input (eq. 8-12): a (T, h_a, w_a) heatmap resampled to the video token grid `size` =
    (h, w) (the patch grid of `video_grid_thw`) -> (T, h, w): each token cell the area-weighted mean
    of the heat under it (both grids span the whole frame; `area_weights`). Returned unchanged (the
    same tensor) when it is already on that grid."""
    if heat.dim() != 3:
        raise ValueError(f"a heatmap must be (T, h, w), got shape {tuple(heat.shape)}")
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"video token grid must be at least 1 x 1, got {h} x {w}")
    if tuple(heat.shape[1:]) == (h, w):
        return heat
    ah = area_weights(h, heat.shape[1]).to(heat.device)
    aw = area_weights(w, heat.shape[2]).to(heat.device)
    return torch.einsum("ij,tjk,lk->til", ah, heat.double(), aw).to(heat.dtype)


RAE_KEYS = ("channels", "conv_layers", "grid", "num_base", "variant", "init", "init_gain")  # constructor settings


def rae_kwargs(cfg) -> dict:
    """RegionAwareAnomalyEncoder kwargs from a RAEConfig, a dict, or an RAE module (what a
    checkpoint's tvad.json records as "rae")."""
    if cfg is None:
        return {}
    if isinstance(cfg, RegionAwareAnomalyEncoder):
        conv = [m for m in cfg.f if isinstance(m, nn.Conv2d)]
        return {"channels": int(conv[-1].out_channels), "conv_layers": len(conv), "grid": cfg.grid,
                "num_base": cfg.num_base, "variant": cfg.variant, "init": cfg.init, "init_gain": cfg.init_gain}
    d = cfg if isinstance(cfg, dict) else {k: getattr(cfg, k) for k in RAE_KEYS if hasattr(cfg, k)}
    return {k: d[k] for k in RAE_KEYS if k in d}


def new_rae(hidden_size: int, kwargs: dict, seed: int | None = None) -> RegionAwareAnomalyEncoder:
    """A new RAE of width `hidden_size` (the decoder's) with `kwargs` (`rae_kwargs`). With `seed`
    (stage 2's fresh RAE), `torch.manual_seed(seed)` immediately before construction; without it
    (weights about to be restored from a checkpoint) the global RNG is left alone."""
    if seed is not None:
        torch.manual_seed(seed)
    return RegionAwareAnomalyEncoder(hidden_size=int(hidden_size), **kwargs)
