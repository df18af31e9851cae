"""The paper's figures from saved arrays (no model runs): each function returns a matplotlib figure,
`save(fig, out_dir, name)` writes `<name>.png` and `<name>.pdf`.

    heatmap_grid(examples)                  input frames, GT mask, AHD and decoder-driven heatmaps over time
    trajectory(frames, gt_tracks, regions, masks, heat)   GT (green) / predicted (red) boxes over time,
                                            accumulated GT and predicted masks
    dialogue(frames, heat, messages)        key frames with heatmaps beside a multi-turn conversation
    dialogue_examples(examples)             teaching figure: a success and a failure, each with its heading,
                                            key frames, heatmaps, and every answer in full beside its reference
    roc({method: (fpr, tpr, auc)}, labels=...)          frame-level ROC curves
    rbdc_curves({method: {"fpr", "rbdr", "tbdr"}}, labels=...)   RBDR / TBDR against false positives per frame
    training_curves(stage1_history, stage2_histories)   losses and validation metrics

Method names are keys; display labels are passed in (`labels={method: label}`, e.g. the
evaluation's HEATMAP_METHODS), so this module knows nothing of the evaluation. One style (`tvad.viz.plots.set_style`: seaborn paper context), sized for a paper column (3.3 in)
or the full width (6.9 in).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tvad.viz.overlays import GT_COLOR, PRED_COLOR, draw_boxes, draw_track, overlay_heatmap, overlay_mask
from tvad.viz.plots import set_style

COLUMN_IN = 3.3  # one paper column, inches
FULL_IN = 6.9  # full text width, inches
HEAT_CMAP = "jet"
ROW_LABELS = {"frame": "input", "gt": "GT mask", "ahd": "AHD", "decoder": "decoder", "framediff": "frame diff."}

__all__ = ["save", "heatmap_grid", "trajectory", "dialogue", "dialogue_examples", "roc", "rbdc_curves", "training_curves",
           "time_indices", "FIGURE_NAMES"]
FIGURE_NAMES = ("heatmap_grid", "trajectory", "dialogue", "roc", "rbdc_curves", "training_curves")


def _plt():
    import matplotlib.pyplot as plt

    set_style()
    return plt


def save(fig, out_dir: str | Path, name: str, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write `fig` as `<out_dir>/<name>.<fmt>` for each format (PNG at 200 dpi, vector PDF)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = d / f"{name}.{fmt}"
        fig.savefig(p, dpi=200, bbox_inches="tight")
        paths.append(p)
    return paths


def time_indices(n: int, k: int, focus: np.ndarray | None = None) -> np.ndarray:
    """k frame indices of an n-frame clip: evenly spaced, or evenly over the frames where `focus`
    (T,) is true when it has at least k of them."""
    if focus is not None and np.count_nonzero(focus) >= k:
        f = np.flatnonzero(focus)
        return f[np.linspace(0, len(f) - 1, k).round().astype(int)]
    return np.linspace(0, n - 1, min(k, n)).round().astype(int)


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


_HEAD_COLOR = {"success": "#1b5e20", "failure": "#8b0000"}  # a teaching figure's example headings


def _wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` characters where words allow: every word kept whole, in
    order, nothing dropped or elided (a longer word gets its own line); paragraphs ("\\n") kept."""
    out = []
    for para in str(text).split("\n"):
        out += textwrap.wrap(para, width, break_long_words=False, break_on_hyphens=False) or [""]
    return out


# -- heatmap comparison grid -----------------------------------------------------------------------

def heatmap_grid(examples: Sequence[Mapping], rows: Sequence[str] = ("frame", "gt", "ahd", "decoder"),
                 times: int = 4, width: float = FULL_IN, overlay: bool = True,
                 labels: Mapping[str, str] | None = None, titles: Sequence[str] | None = None,
                 wrap: int = 110):
    """The paper's heatmap comparison: for each example clip a block of rows (input, GT mask, AHD,
    decoder-driven map; any method in `example["heatmaps"]`), columns = `times` frames spread over
    the clip's anomalous span. `examples`: dicts with "name", "frames" (T, H, W, 3) uint8,
    "masks" (T, H, W) or None, "heatmaps" {method: (T, H, W) in [0, 1]}. `labels`: {row: label},
    over the short `ROW_LABELS` (default: those, else the row key). `titles`: per example a heading
    above its block (e.g. "Success: ..." / "Failure: ..."), wrapped at `wrap` characters, never cut."""
    plt = _plt()
    if not examples:
        raise ValueError("heatmap_grid needs at least one example")
    heads = [_wrap(t, wrap) if t else [] for t in titles] if titles else [[] for _ in examples]
    row_labels = {**ROW_LABELS, **(labels or {})}
    blocks = []
    for ex in examples:
        have = [r for r in rows if r == "frame" or (r == "gt" and ex.get("masks") is not None)
                or r in (ex.get("heatmaps") or {})]
        blocks.append(have)
    n_rows = sum(len(b) for b in blocks)
    H, W = examples[0]["frames"].shape[1:3]
    cell = width / (times + 0.35)
    head_in = [0.13 * len(h) + (0.28 if h else 0) for h in heads]  # inches per heading (and the t= labels below it)
    ratios = [1.0] * n_rows
    gaps = [hi / (cell * H / W) for hi in head_in]  # heading height in rows
    fig_h = cell * H / W * (n_rows + sum(gaps)) + 0.3 * len(examples)
    fig = plt.figure(figsize=(width, fig_h))
    spec_rows, r = [], 0
    for have, g, h in zip(blocks, gaps, heads):  # a spacer row above a block holds its heading
        if h:
            spec_rows.append(r)
            ratios.insert(r, g)
            r += 1
        r += len(have)
    gs = fig.add_gridspec(len(ratios), times, height_ratios=ratios, wspace=0.03, hspace=0.06)
    axes = np.empty((n_rows, times), dtype=object)
    row_of = [k for k in range(len(ratios)) if k not in spec_rows]
    for i, k in enumerate(row_of):
        for j in range(times):
            axes[i, j] = fig.add_subplot(gs[k, j])
    for k, h in zip(spec_rows, [h for h in heads if h]):
        ax = fig.add_subplot(gs[k, :])
        ax.axis("off")
        ax.text(0.0, 1.0, "\n".join(h), fontsize=7.5, weight="bold", ha="left", va="top",
                transform=ax.transAxes, color=_HEAD_COLOR.get(h[0].split(":")[0].lower(), "black"))
    r0 = 0
    for ex, have in zip(examples, blocks):
        fr = np.asarray(ex["frames"])
        masks = ex.get("masks")
        focus = None if masks is None else np.asarray(masks).reshape(len(masks), -1).any(1)
        idx = time_indices(len(fr), times, focus)
        for i, kind in enumerate(have):
            for j in range(times):
                ax = axes[r0 + i, j]
                _off(ax)
                if j >= len(idx):
                    continue
                t = int(idx[j])
                if kind == "frame":
                    img = fr[t]
                elif kind == "gt":
                    m = np.asarray(masks[t]) != 0
                    img = overlay_mask(fr[t], m, GT_COLOR, 0.6) if overlay else np.repeat(m[..., None] * 255, 3, -1)
                else:
                    h = np.asarray(ex["heatmaps"][kind][t], np.float32)
                    img = overlay_heatmap(fr[t], h, 0.55, HEAT_CMAP) if overlay else h
                ax.imshow(img, cmap=None if img.ndim == 3 else HEAT_CMAP, vmin=0, vmax=1)
                if i == 0:
                    ax.set_title(f"t={t}", fontsize=7, pad=2)
                if j == 0:
                    label = row_labels.get(kind, kind)
                    if i == 0:
                        label = f"{ex.get('name', '')}\n{label}"
                    ax.set_ylabel(label, fontsize=7)
        r0 += len(have)
    return fig


# -- trajectory figure ------------------------------------------------------------------------------

def _boxes_at(rows: np.ndarray, t: int, frame_col: int) -> np.ndarray:
    rows = np.asarray(rows, float).reshape(-1, 6)
    return rows[rows[:, frame_col] == t]


def _centres(rows: np.ndarray, n: int, frame_col: int, box_cols: slice) -> list:
    """Per frame the centre of the largest box (None where there is none)."""
    out = []
    for t in range(n):
        b = _boxes_at(rows, t, frame_col)
        if len(b) == 0:
            out.append(None)
            continue
        bx = b[:, box_cols]
        big = bx[np.argmax((bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1]))]
        out.append(((big[0] + big[2]) / 2, (big[1] + big[3]) / 2))
    return out


def trajectory(frames: np.ndarray, gt_tracks: np.ndarray | None, regions: np.ndarray | None,
               masks: np.ndarray | None = None, heat: np.ndarray | None = None, threshold: float = 0.5,
               times: int = 4, width: float = FULL_IN, title: str | None = None):
    """Top row: `times` key frames with GT boxes (green; rows [track, frame, x1, y1, x2, y2]) and
    predicted regions (red; rows [frame, x1, y1, x2, y2, score]); then the clip's last frame with
    both trajectories (box centres over time), the accumulated GT masks and the accumulated
    predicted masks (heat >= threshold), each as the fraction of frames covering a pixel."""
    plt = _plt()
    fr = np.asarray(frames)
    T = len(fr)
    gt = np.zeros((0, 6)) if gt_tracks is None else np.asarray(gt_tracks, float).reshape(-1, 6)
    pr = np.zeros((0, 6)) if regions is None else np.asarray(regions, float).reshape(-1, 6)
    focus = None if masks is None else np.asarray(masks).reshape(T, -1).any(1)
    idx = time_indices(T, times, focus)
    panels = len(idx) + 1 + (masks is not None) + (heat is not None)
    H, W = fr.shape[1:3]
    fig, axes = plt.subplots(1, panels, figsize=(width, width / panels * H / W + 0.45), squeeze=False,
                             gridspec_kw={"wspace": 0.04})
    axes = axes[0]
    for j, t in enumerate(idx):
        img = draw_boxes(fr[t], _boxes_at(gt, t, 1)[:, 2:6], GT_COLOR, 2)
        img = draw_boxes(img, _boxes_at(pr, t, 0)[:, 1:5], PRED_COLOR, 2)
        axes[j].imshow(img)
        axes[j].set_title(f"t={int(t)}", fontsize=7, pad=2)
        _off(axes[j])
    k = len(idx)
    comp = fr[-1].copy()
    for t in range(T):  # every frame's boxes stacked on the last frame, then the centre trajectories
        comp = draw_boxes(comp, _boxes_at(gt, t, 1)[:, 2:6], GT_COLOR, 1)
        comp = draw_boxes(comp, _boxes_at(pr, t, 0)[:, 1:5], PRED_COLOR, 1)
    comp = draw_track(comp, _centres(gt, T, 1, slice(2, 6)), GT_COLOR, 2)
    comp = draw_track(comp, _centres(pr, T, 0, slice(1, 5)), PRED_COLOR, 2)
    axes[k].imshow(comp)
    axes[k].set_title("boxes and paths\nover time", fontsize=7, pad=2)
    _off(axes[k])
    k += 1
    if masks is not None:
        acc = (np.asarray(masks) != 0).mean(0)
        axes[k].imshow(acc, cmap="Greens", vmin=0, vmax=max(acc.max(), 1e-6))
        axes[k].set_title("accumulated\nGT masks", fontsize=7, pad=2)
        _off(axes[k])
        k += 1
    if heat is not None:
        acc = (np.asarray(heat) >= threshold).mean(0)
        axes[k].imshow(acc, cmap="Reds", vmin=0, vmax=max(acc.max(), 1e-6))
        axes[k].set_title("accumulated\npredicted masks", fontsize=7, pad=2)
        _off(axes[k])
    from matplotlib.lines import Line2D

    fig.legend([Line2D([], [], color=np.array(GT_COLOR) / 255, lw=2), Line2D([], [], color=np.array(PRED_COLOR) / 255,
                                                                             lw=2)],
               ["ground truth", "prediction"], loc="lower center", ncol=2, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.04))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# -- dialogue figure ---------------------------------------------------------------------------------

def _frames_and_heat(fig, grid, fr: np.ndarray, heat: np.ndarray | None, idx: Sequence[int], fontsize: float) -> None:
    """The key frames `idx` of `fr` (N, H, W, 3) in row 0 of `grid` and, with `heat` (N, H, W), their
    heatmap overlays in row 1 (the dialogue figures' left column)."""
    for j, t in enumerate(idx):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(fr[t])
        ax.set_title(f"t={int(t)}", fontsize=fontsize, pad=2)
        _off(ax)
        if heat is not None:
            ax2 = fig.add_subplot(grid[1, j])
            ax2.imshow(overlay_heatmap(fr[t], np.asarray(heat[t], np.float32), 0.55, HEAT_CMAP))
            _off(ax2)
            if j == 0:
                ax2.set_ylabel("heatmap", fontsize=fontsize)


def dialogue(frames: np.ndarray, heat: np.ndarray | None, messages: Sequence[Mapping], times: int = 4,
             width: float = FULL_IN, wrap: int = 58, title: str | None = None):
    """Left: `times` key frames (top) and their heatmaps (bottom); right: the conversation
    (`messages`: {"role": "user" | "assistant", "content"}; system turns are skipped)."""
    plt = _plt()
    fr = np.asarray(frames)
    idx = time_indices(len(fr), times, None if heat is None else
                       (np.asarray(heat).reshape(len(heat), -1).max(1) >= 0.5))
    n_img_rows = 2 if heat is not None else 1
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    lines = []
    for m in turns:
        who = "Q" if m["role"] == "user" else "A"
        body = textwrap.wrap(str(m["content"]).strip() or "(empty)", wrap) or [""]
        lines.append((who, body))
    n_text = sum(len(b) for _, b in lines) + len(lines)
    H, W = fr.shape[1:3]
    img_w = width * 0.5
    h_img = img_w / times * H / W * n_img_rows
    fig_h = max(h_img + 0.3, 0.14 * n_text + 0.3)
    fig = plt.figure(figsize=(width, fig_h))
    gs = fig.add_gridspec(n_img_rows, times + 1, width_ratios=[1] * times + [times * 1.0],
                          wspace=0.04, hspace=0.05)
    _frames_and_heat(fig, gs, fr, heat, idx, 7)
    tx = fig.add_subplot(gs[:, times])
    tx.axis("off")
    y = 1.0
    step = 1.0 / max(n_text, 1)
    for who, body in lines:
        color = "#1f4e79" if who == "Q" else "#7a1f1f"
        for i, line in enumerate(body):
            tx.text(0.0, y, (f"{who}: " if i == 0 else "    ") + line, fontsize=7, color=color,
                    va="top", ha="left", family="sans-serif", transform=tx.transAxes,
                    weight="bold" if who == "Q" and i == 0 else "normal")
            y -= step
        y -= step
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def dialogue_examples(examples: Sequence[Mapping], times: int = 3, width: float = FULL_IN, wrap: int = 64):
    """Teaching figure: per example a block, its heading (`example["title"]`, e.g. "Success: ..." /
    "Failure: ..."), `times` key frames with their heatmaps on the left and the conversation on the
    right: each question, the model's answer and the reference answer, every one in full, wrapped at
    `wrap` characters (never cut or elided). `examples`: dicts with "frames" (T, H, W, 3), "heat"
    (T, H, W) or None, "turns" [{"question", "answer", "reference"}], "title"."""
    plt = _plt()
    if not examples:
        raise ValueError("dialogue_examples needs at least one example")
    blocks = []
    for ex in examples:
        lines = [("head", ln) for ln in _wrap(ex.get("title") or "", wrap + 30)] if ex.get("title") else []
        for t in ex.get("turns") or []:
            for who, key in (("Q", "question"), ("Model", "answer"), ("Ref.", "reference")):
                if key == "reference" and not t.get(key):
                    continue
                body = _wrap(str(t.get(key) or "").strip() or "(empty)", wrap)
                lines += [(who, (f"{who}: " if i == 0 else "      ") + ln) for i, ln in enumerate(body)]
            lines.append(("gap", ""))
        blocks.append(lines)
    line_in = 0.13
    fr0 = np.asarray(examples[0]["frames"])
    H, W = fr0.shape[1:3]
    img_w = width * 0.36
    heights = [max(img_w / times * H / W * 2 + 0.3, line_in * len(b) + 0.2) for b in blocks]
    fig = plt.figure(figsize=(width, sum(heights)))
    outer = fig.add_gridspec(len(examples), 1, height_ratios=heights, hspace=0.12)
    colors = {"head": "black", "Q": "#1f4e79", "Model": "#7a1f1f", "Ref.": "#555555"}
    for b, (ex, lines, h_in) in enumerate(zip(examples, blocks, heights)):
        g = outer[b].subgridspec(1, 2, width_ratios=[0.36, 0.64], wspace=0.03)
        fr = np.asarray(ex["frames"])
        heat = ex.get("heat")
        idx = time_indices(len(fr), times, None if heat is None else
                           (np.asarray(heat).reshape(len(heat), -1).max(1) >= 0.5))
        rows = 2 if heat is not None else 1
        img_h = img_w / times * fr.shape[1] / fr.shape[2] * rows
        gi = g[0].subgridspec(rows + 1, len(idx), height_ratios=[img_h / rows] * rows + [max(h_in - img_h, 1e-3)],
                              wspace=0.04, hspace=0.05)
        _frames_and_heat(fig, gi, fr, heat, idx, 6)
        tx = fig.add_subplot(g[1])
        tx.axis("off")
        step = line_in / max(h_in, 1e-6)
        y = 1.0
        role = str(lines[0][1] if lines and lines[0][0] == "head" else "").split(":")[0].lower()
        for who, text in lines:
            if who != "gap":
                tx.text(0.0, y, text, fontsize=6.5 if who != "head" else 7.5, va="top", ha="left",
                        family="sans-serif", transform=tx.transAxes,
                        color=_HEAD_COLOR.get(role, "black") if who == "head" else colors[who],
                        weight="bold" if who in ("head", "Q") else "normal")
            y -= step
    return fig


# -- curves ----------------------------------------------------------------------------------------

def _label(labels: Mapping[str, str] | None, method: str) -> str:
    """The display label of `method` (the key itself when `labels` has none)."""
    return (labels or {}).get(method, method)


def roc(curves: Mapping[str, Mapping[str, tuple]] | Mapping[str, tuple], width: float = FULL_IN,
        labels: Mapping[str, str] | None = None):
    """Frame-level (micro) ROC curves: {split: {method: (fpr, tpr, auc)}} (one panel per split) or
    {method: (fpr, tpr, auc)} (one panel). One legend for the methods below the panels; each
    panel lists its micro AUCs (%). `labels`: {method: display label} (default: the method key)."""
    plt = _plt()
    first = next(iter(curves.values()), None)
    if first is None:
        raise ValueError("roc needs at least one curve")
    panels = curves if isinstance(first, Mapping) else {"": curves}
    n = len(panels)
    side = min(width / n, COLUMN_IN)
    fig, axes = plt.subplots(1, n, figsize=(max(side * n, COLUMN_IN), side + 0.6), squeeze=False)
    colors = {}
    for ax, (split, cs) in zip(axes[0], panels.items()):
        lines = []
        for m, (fpr, tpr, auc) in cs.items():
            line, = ax.plot(fpr, tpr, lw=1.4, color=colors.get(m), label=_label(labels, m))
            colors.setdefault(m, line.get_color())
            lines.append(f"{100 * auc:.1f}")
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", title=str(split))
        ax.set_aspect("equal")
        for k, (m, txt) in enumerate(zip(cs, lines)):
            ax.text(0.97, 0.04 + 0.08 * (len(lines) - 1 - k), txt, color=colors[m], fontsize=7, ha="right",
                    transform=ax.transAxes)
    axes[0, 0].set_ylabel("true positive rate")
    from matplotlib.lines import Line2D

    fig.legend([Line2D([], [], color=c, lw=1.6) for c in colors.values()], [_label(labels, m) for m in colors],
               loc="lower center", ncol=min(4, len(colors)), fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def rbdc_curves(curves: Mapping[str, Mapping[str, np.ndarray]], max_fpr: float = 1.0, width: float = FULL_IN,
                title: str | None = None, labels: Mapping[str, str] | None = None):
    """RBDR and TBDR against false positives per frame: {method: {"fpr", "rbdr", "tbdr"}}; the
    areas over [0, max_fpr] are the RBDC/TBDC of the tables (the legend's numbers). `labels`:
    {method: display label} (default: the method key)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(width, width * 0.38))
    for m, c in curves.items():
        fpr = np.asarray(c["fpr"], float)
        for ax, key in zip(axes, ("rbdr", "tbdr")):
            y = np.asarray(c[key], float)
            x, yy = fpr[fpr <= max_fpr], y[fpr <= max_fpr]
            if len(x) and x[-1] < max_fpr:
                x, yy = np.append(x, max_fpr), np.append(yy, yy[-1])
            area = float(np.sum(np.diff(x) * (yy[1:] + yy[:-1]) / 2)) if len(x) > 1 else 0.0
            ax.plot(x, yy, lw=1.4, drawstyle="default", label=f"{_label(labels, m)} ({100 * area:.1f})")
    for ax, key in zip(axes, ("RBDR", "TBDR")):
        ax.set(xlim=(0, max_fpr), ylim=(0, 1.01), xlabel="false positives per frame", ylabel=key)
        ax.legend(fontsize=6, loc="upper left", title="area (%)", title_fontsize=6, framealpha=0.85)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def training_curves(stage1: Mapping | None = None, stage2: Mapping[str, Mapping] | None = None,
                    width: float = FULL_IN):
    """Stage 1 (`stage1/history.json`: {"train": [{step, loss}], "val": [{epoch, metrics}], "best"})
    loss per optimizer step and validation metrics per epoch; stage 2 (`{name: history.json}` of
    each phase: {"log": Trainer log history}) training and validation loss per step."""
    plt = _plt()
    panels = []
    if stage1 and stage1.get("train"):
        panels.append("s1_loss")
    if stage1 and stage1.get("val"):
        panels.append("s1_val")
    if stage2 and any((h or {}).get("log") for h in stage2.values()):
        panels.append("s2")
    if not panels:
        raise ValueError("training_curves: no training history given")
    fig, axes = plt.subplots(1, len(panels), figsize=(width, width * 0.32), squeeze=False)
    for ax, p in zip(axes[0], panels):
        if p == "s1_loss":
            tr = stage1["train"]
            steps = np.array([h["step"] for h in tr])
            loss = np.array([h["loss"] for h in tr], float)
            ax.plot(steps, loss, lw=0.8, alpha=0.45, label="per step")
            if len(loss) >= 5:
                k = max(2, len(loss) // 15)
                sm = np.convolve(loss, np.ones(k) / k, mode="valid")
                ax.plot(steps[k - 1:], sm, lw=1.5, label=f"mean of {k}")
            ax.set(xlabel="optimizer step", ylabel="loss", title="stage 1: AHD loss", yscale="log")
            ax.legend(fontsize=6)
        elif p == "s1_val":
            va = stage1["val"]
            ep = [v["epoch"] for v in va]
            for k in ("micro_auc", "macro_auc", "rbdc", "tbdc"):
                if all(k in v for v in va):
                    ax.plot(ep, [v[k] for v in va], marker="o", ms=3, lw=1.2, label=k.replace("_", " "))
            best = stage1.get("best") or {}
            if best.get("epoch") is not None and "micro_auc" in best:
                ax.plot([best["epoch"]], [best["micro_auc"]], "k*", ms=9, label="kept")
            ax.set(xlabel="epoch", title="stage 1: validation", ylim=(0, 1.02))
            ax.legend(fontsize=6)
        else:
            for name, h in stage2.items():
                log = (h or {}).get("log") or []
                tr = [(e["step"], e["loss"]) for e in log if "loss" in e and "step" in e]
                ev = [(e["step"], e["eval_loss"]) for e in log if "eval_loss" in e and "step" in e]
                if tr:
                    line, = ax.plot(*zip(*tr), lw=1.0, label=f"{name} train")
                    if ev:
                        ax.plot(*zip(*ev), marker="o", ms=3, ls="--", color=line.get_color(), label=f"{name} val")
            ax.set(xlabel="optimizer step", ylabel="loss", title="stage 2: SFT loss")
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
