"""Shared by the stage-1 tests (test_train_stage1, test_bad_inputs_train): planted features whose
anomalous patches carry a fixed direction, and a seeded fresh AHD on them."""

import torch

from tvad.metrics import tracks_from_masks
from tvad.model.ahd import AHD, pair_merge
from tvad.train.stage1 import Sample


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
        out.append(Sample(name=f"v{seed}_{v}", features={0: feats.half(), 1: (feats * 0.5).half()},
                          masks=pair_merge(masks), frame_labels=labels, gt_tracks=tracks_from_masks(masks.numpy()),
                          num_frames=2 * T, frame_size=(S, S), anomaly_type="a" if v % 2 == 0 else "normal"))
    return out


def fresh_ahd():
    torch.manual_seed(0)
    a = AHD({0: 8, 1: 8}, 8, hidden=16)
    a.set_text(torch.randn(4, 8), torch.randn(4, 8))
    return a
