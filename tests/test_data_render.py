"""tvad.data.render: scene layouts, backgrounds and sprites drawn with their object ids."""

from __future__ import annotations

import numpy as np

from tvad.data import render as R


def test_layout_and_background_are_deterministic():
    a = R.make_layout(np.random.default_rng(3), 224, 288)
    b = R.make_layout(np.random.default_rng(3), 224, 288)
    assert (a.H, a.W) == (224, 288) and a.orientation == b.orientation and a.bands == b.bands
    bg = R.render_background(a)
    assert bg.shape == (224, 288, 3) and bg.dtype == np.float32 and np.array_equal(bg, R.render_background(b))
    assert {"walk_a", "walk_b", "road"} <= set(a.bands)


def test_a_drawn_sprite_writes_its_id():
    lay = R.make_layout(np.random.default_rng(0), 224, 224)
    img = R.render_background(lay)
    ids = np.zeros(img.shape[:2], np.uint8)
    ch, cw = lay.car_hw()
    parts = R.car_parts(ch, cw, {"body": R.CAR_COLORS[next(iter(R.CAR_COLORS))]}, {"facing": 1}, lay.orientation)
    R.draw_parts(img, ids, 7, parts, 112.0, 150.0)
    ys, xs = np.nonzero(ids == 7)
    assert len(ys) > 50 and ys.max() <= 150 and abs(xs.mean() - 112) < cw / 2
