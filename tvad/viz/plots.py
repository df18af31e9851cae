"""One consistent plotting style, readable at paper column width, and small plot helpers."""

from __future__ import annotations

import numpy as np


def set_style() -> None:
    """seaborn's paper context with a white grid; call once at the top of a notebook."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    mpl.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight",
                         "axes.titlesize": 10, "image.interpolation": "nearest"})


def show_frames(frames: np.ndarray, titles=None, ncols: int | None = None, size: float = 2.2, suptitle=None):
    """A row/grid of uint8 (N, H, W, 3) images; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    n = len(frames)
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    h, w = frames.shape[1:3]
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * w / max(h, w) + 0.2,
                                                    size * nrows * h / max(h, w) + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(frames[i])
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def table(rows, floatfmt: str = ".3f") -> str:
    """A Markdown table from a list of dicts (columns from the first row); for notebooks and reports."""
    rows = list(rows)
    if not rows:
        return "_(empty)_"
    cols = list(rows[0])

    def cell(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
