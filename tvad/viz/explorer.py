"""A frame scrubber: a clip with its heatmap overlay, its GT mask and the frame-score timeline.

    from tvad.viz.explorer import scrubber
    scrubber(frames, heatmaps, masks=gt, scores=det.frame_scores, labels=frame_labels)

In JupyterLab (or VS Code) it is an ipywidgets slider and play button over the frames; each move
redraws the panels (input | heatmap overlay + regions | GT) and the timeline's cursor. Executed
headless (papermill, nbconvert, a script) a widget would be a dead view, so there it shows a static
strip of key frames over the timeline instead, which is what an executed notebook keeps. The choice
follows `tvad.viz.widgets.live_frontend()` (TVAD_WIDGETS=1 / 0 forces it); `static=True / False`
overrides it. Arrays only: no model runs here.
"""

from __future__ import annotations

import io

import numpy as np

from tvad.viz.overlays import GT_COLOR, draw_boxes, overlay_heatmap, overlay_mask
from tvad.viz.plots import set_style
from tvad.viz.widgets import live_frontend

__all__ = ["FrameScrubber", "scrubber", "compose_frame", "static_strip"]


def _check(frames, heatmaps, masks, scores, labels):
    fr = np.asarray(frames)
    if fr.ndim != 4 or fr.shape[-1] != 3 or fr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {fr.dtype} {fr.shape}")
    T = len(fr)
    hm = None if heatmaps is None else np.asarray(heatmaps, np.float32)
    if hm is not None and hm.shape != fr.shape[:3]:
        raise ValueError(f"heatmaps {hm.shape} do not match frames {fr.shape[:3]}")
    mk = None if masks is None else np.asarray(masks)
    if mk is not None and mk.shape != fr.shape[:3]:
        raise ValueError(f"masks {mk.shape} do not match frames {fr.shape[:3]}")
    sc = None if scores is None else np.asarray(scores, np.float32).reshape(-1)
    if sc is not None and len(sc) != T:
        raise ValueError(f"{len(sc)} scores for {T} frames")
    lb = None if labels is None else np.asarray(labels).reshape(-1)
    if lb is not None and len(lb) != T:
        raise ValueError(f"{len(lb)} labels for {T} frames")
    if sc is None and hm is not None:
        sc = hm.reshape(T, -1).max(1)
    return fr, hm, mk, sc, lb


def compose_frame(frames, heatmaps=None, masks=None, t: int = 0, regions: np.ndarray | None = None,
                  gap: int = 4) -> np.ndarray:
    """Frame t as one uint8 image: input | heatmap overlay (+ regions) | GT mask overlay."""
    fr = np.asarray(frames)
    parts = [fr[t]]
    if heatmaps is not None:
        img = overlay_heatmap(fr[t], np.asarray(heatmaps[t], np.float32), 0.5)
        if regions is not None and len(regions):
            r = np.asarray(regions, float).reshape(-1, 6)
            img = draw_boxes(img, r[r[:, 0] == t][:, 1:5], (255, 255, 255), 1)
        parts.append(img)
    if masks is not None:
        parts.append(overlay_mask(fr[t], np.asarray(masks[t]) != 0, GT_COLOR, 0.55))
    H = fr.shape[1]
    sep = np.full((H, gap, 3), 255, np.uint8)
    out = [parts[0]]
    for p in parts[1:]:
        out += [sep, p]
    return np.concatenate(out, axis=1)


def _timeline_fig(scores, labels, t: int | None, width: float = 6.5, height: float = 1.2):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    T = len(scores) if scores is not None else len(labels)
    x = np.arange(T)
    if labels is not None and np.any(labels):
        ax.fill_between(x, 0, 1, where=np.asarray(labels) > 0, step="mid", color="tab:green", alpha=0.2,
                        label="GT anomalous", lw=0)
    if scores is not None:
        ax.plot(x, scores, color="tab:red", lw=1.3, label="frame score")
    if t is not None:
        ax.axvline(t, color="k", lw=1)
    ax.set(xlim=(-0.5, T - 0.5), ylim=(0, 1.02), xlabel="frame")
    ax.legend(fontsize=6, loc="upper right", frameon=False)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _png_image(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def static_strip(frames, heatmaps=None, masks=None, scores=None, labels=None, num: int = 6, title: str | None = None):
    """The static view: `num` key frames (rows: input, heatmap, GT) over the frame-score timeline."""
    import matplotlib.pyplot as plt

    set_style()
    fr, hm, mk, sc, lb = _check(frames, heatmaps, masks, scores, labels)
    idx = np.linspace(0, len(fr) - 1, min(num, len(fr))).round().astype(int)
    rows = 1 + (hm is not None) + (mk is not None)
    H, W = fr.shape[1:3]
    width = 6.9
    cell = width / len(idx)
    fig = plt.figure(figsize=(width, cell * H / W * rows + 1.3))
    gs = fig.add_gridspec(rows + 1, len(idx), height_ratios=[cell * H / W] * rows + [1.1], hspace=0.08, wspace=0.03)
    for j, t in enumerate(idx):
        r = 0
        for kind in ("frame", "heat", "gt"):
            if kind == "heat" and hm is None or kind == "gt" and mk is None:
                continue
            ax = fig.add_subplot(gs[r, j])
            img = fr[t] if kind == "frame" else (overlay_heatmap(fr[t], hm[t], 0.5) if kind == "heat"
                                                 else overlay_mask(fr[t], mk[t] != 0, GT_COLOR, 0.55))
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={t}" + (f"  {sc[t]:.2f}" if sc is not None else ""), fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel({"frame": "input", "heat": "heatmap", "gt": "GT"}[kind], fontsize=7)
            r += 1
    ax = fig.add_subplot(gs[rows, :])
    T = len(fr)
    if lb is not None and np.any(lb):
        ax.fill_between(np.arange(T), 0, 1, where=lb > 0, step="mid", color="tab:green", alpha=0.2, lw=0,
                        label="GT anomalous")
    if sc is not None:
        ax.plot(np.arange(T), sc, color="tab:red", lw=1.3, label="frame score")
    for t in idx:
        ax.axvline(t, color="0.5", lw=0.6, ls=":")
    ax.set(xlim=(-0.5, T - 0.5), ylim=(0, 1.02), xlabel="frame")
    ax.legend(fontsize=6, loc="upper right", frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


class FrameScrubber:
    """The interactive explorer (ipywidgets): `.widget` is a VBox (play, slider, image, timeline)."""

    def __init__(self, frames, heatmaps=None, masks=None, scores=None, labels=None, regions=None,
                 title: str | None = None):
        self.frames, self.heatmaps, self.masks, self.scores, self.labels = _check(frames, heatmaps, masks, scores,
                                                                                  labels)
        self.regions = regions
        self.title = title
        self._widget = None

    def image(self, t: int) -> np.ndarray:
        return compose_frame(self.frames, self.heatmaps, self.masks, t, self.regions)

    def timeline_png(self, t: int) -> bytes:
        return _png(_timeline_fig(self.scores, self.labels, t))

    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        import ipywidgets as w

        T = len(self.frames)
        img = w.Image(value=_png_image(self.image(0)), format="png")
        line = w.Image(value=self.timeline_png(0), format="png")
        slider = w.IntSlider(value=0, min=0, max=T - 1, step=1, description="frame", continuous_update=True)
        play = w.Play(value=0, min=0, max=T - 1, step=1, interval=150, description="play")
        w.jslink((play, "value"), (slider, "value"))
        info = w.HTML(self._info(0))

        def update(change):
            t = int(change["new"])
            img.value = _png_image(self.image(t))
            line.value = self.timeline_png(t)
            info.value = self._info(t)

        slider.observe(update, names="value")
        head = [w.HTML(f"<b>{self.title}</b>")] if self.title else []
        return w.VBox(head + [w.HBox([play, slider, info]), img, line])

    def _info(self, t: int) -> str:
        s = f"score {self.scores[t]:.3f}" if self.scores is not None else ""
        if self.labels is not None:
            s += f" &nbsp; GT {'anomalous' if self.labels[t] else 'normal'}"
        return s

    def static(self, num: int = 6):
        return static_strip(self.frames, self.heatmaps, self.masks, self.scores, self.labels, num, self.title)


def scrubber(frames, heatmaps=None, masks=None, scores=None, labels=None, regions=None, title: str | None = None,
             static: bool | None = None, num: int = 6) -> FrameScrubber:
    """Display the explorer (see the module docstring for static / interactive) and return it."""
    sc = FrameScrubber(frames, heatmaps, masks, scores, labels, regions, title)
    if static is None:
        static = not live_frontend()
    try:
        from IPython import get_ipython
        from IPython.display import display

        in_ipython = get_ipython() is not None
    except ImportError:
        in_ipython = False
    if not static and in_ipython:
        try:
            display(sc.widget)
            return sc
        except ImportError:  # no ipywidgets: the static view
            pass
    import matplotlib.pyplot as plt

    fig = sc.static(num)
    sc.static_figure = fig
    if in_ipython:
        display(fig)
        plt.close(fig)
    return sc

