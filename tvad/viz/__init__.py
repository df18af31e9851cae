"""Drawing arrays and records: overlays (masks, heatmaps, boxes, tracks) and plots. No model runs."""

from tvad.viz.overlays import draw_boxes, draw_track, frame_strip, overlay_heatmap, overlay_mask  # noqa: F401
from tvad.viz.plots import set_style  # noqa: F401
