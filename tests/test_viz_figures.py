"""Figures and the frame scrubber on synthetic arrays: files written, shapes, static fallback."""

import numpy as np
import pytest

from tvad.viz import explorer, figures


def _clip(T=12, H=48, W=64, seed=0):
    rng = np.random.default_rng(seed)
    frames = (rng.random((T, H, W, 3)) * 60 + 80).astype(np.uint8)
    masks = np.zeros((T, H, W), np.uint8)
    gt, heat = [], np.zeros((T, H, W), np.float32)
    for t in range(3, 10):
        x = 4 + 4 * t
        masks[t, 12:28, x:x + 10] = 1
        frames[t, 12:28, x:x + 10] = (200, 40, 40)
        gt.append([1, t, x, 12, x + 10, 28])
        heat[t, 10:30, x - 1:x + 12] = 0.9
    heat += rng.random(heat.shape).astype(np.float32) * 0.2
    return frames, masks, np.array(gt, float), np.clip(heat, 0, 1)


def test_all_figures_written(tmp_path):
    import matplotlib.pyplot as plt

    from tvad.metrics import regions_from_heatmaps

    frames, masks, gt, heat = _clip()
    ex = [{"name": "clip_a", "frames": frames, "masks": masks,
           "heatmaps": {"ahd": heat, "decoder": np.roll(heat, 5, axis=2)}},
          {"name": "clip_b", "frames": frames, "masks": None, "heatmaps": {"ahd": heat}}]
    figs = {
        "heatmap_grid": figures.heatmap_grid(ex, times=3),
        "trajectory": figures.trajectory(frames, gt, regions_from_heatmaps(heat, 0.5), masks, heat),
        "dialogue": figures.dialogue(frames, heat, [{"role": "system", "content": "x"},
                                                    {"role": "user", "content": "Is there any anomaly?"},
                                                    {"role": "assistant", "content": "Yes. " * 40},
                                                    {"role": "user", "content": "Where?"},
                                                    {"role": "assistant", "content": "Top left."}]),
        "roc": figures.roc({"test": {"ahd": ([0, .1, 1], [0, .8, 1], .9), "framediff": ([0, 1], [0, 1], .5)},
                            "val": {"ahd": ([0, 1], [0, 1], .5)}}),
        "rbdc_curves": figures.rbdc_curves({"ahd": {"fpr": [0, .2, .5], "rbdr": [0, .5, .7], "tbdr": [0, .6, 1.]},
                                            "framediff": {"fpr": [0, 2.0], "rbdr": [0, .3], "tbdr": [0, .2]}}),
        "training_curves": figures.training_curves(
            {"train": [{"step": i, "loss": 1 / (i + 1)} for i in range(1, 30)],
             "val": [{"epoch": e, "micro_auc": .5 + e / 10, "macro_auc": .6, "rbdc": .2, "tbdc": .3} for e in (1, 2, 3)],
             "best": {"epoch": 3, "micro_auc": .8}},
            {"rae phase A": {"log": [{"step": i, "loss": 2 - i / 10} for i in range(1, 8)] + [{"step": 7, "eval_loss": 1.5}]}}),
    }
    assert set(figs) == set(figures.FIGURE_NAMES)
    for name, fig in figs.items():
        paths = figures.save(fig, tmp_path, name)
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
        plt.close(fig)
    # heatmap grid: rows = (input, GT, AHD, decoder) + (input, AHD), columns = times
    g = figures.heatmap_grid(ex, times=3)
    assert len(g.axes) == 6 * 3
    plt.close(g)
    # time indices focus on the anomalous frames
    assert list(figures.time_indices(12, 3, masks.reshape(12, -1).any(1))) == [3, 6, 9]
    with pytest.raises(ValueError):
        figures.training_curves({}, {})


def test_scrubber_static_and_widget(monkeypatch):
    import matplotlib.pyplot as plt

    frames, masks, gt, heat = _clip()
    labels = masks.reshape(len(masks), -1).any(1)
    img = explorer.compose_frame(frames, heat, masks, 5)
    assert img.shape == (48, 64 * 3 + 8, 3) and img.dtype == np.uint8
    sc = explorer.scrubber(frames, heat, masks, labels=labels, static=True)  # outside IPython: static figure
    assert sc.static_figure is not None and np.allclose(sc.scores, heat.reshape(12, -1).max(1))
    plt.close(sc.static_figure)
    w = explorer.FrameScrubber(frames, heat, masks, labels=labels, title="clip").widget
    slider = w.children[1].children[1]
    image = w.children[2]
    before = image.value
    slider.value = 6  # moving the slider redraws the frame
    assert image.value != before
    with pytest.raises(ValueError, match="do not match"):
        explorer.FrameScrubber(frames, heat[:, :10])
    with pytest.raises(ValueError, match="scores"):
        explorer.FrameScrubber(frames, heat, scores=np.zeros(3))


def test_curve_labels_are_passed_in():
    import matplotlib.pyplot as plt

    curves = {"ahd": ([0, .1, 1], [0, .8, 1], .9), "framediff": ([0, 1], [0, 1], .5)}
    fig = figures.roc(curves)  # default: the method keys
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ahd", "framediff"]
    plt.close(fig)
    fig = figures.roc({"test": curves}, labels={"ahd": "AHD (fine-tuned)"})
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["AHD (fine-tuned)", "framediff"]
    plt.close(fig)
    det = {"ahd": {"fpr": [0, .2, .5], "rbdr": [0, .5, .7], "tbdr": [0, .6, 1.]}}
    fig = figures.rbdc_curves(det, 0.5, labels={"ahd": "Ours"})
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(texts) == 1 and texts[0].startswith("Ours (")
    plt.close(fig)
    frames, masks, _, heat = _clip()
    ex = [{"name": "c", "frames": frames, "masks": masks, "heatmaps": {"ahd": heat}}]
    fig = figures.heatmap_grid(ex, rows=("frame", "ahd"), times=2, labels={"ahd": "AHD (ours)"})
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["c\ninput", "AHD (ours)"]
    plt.close(fig)
