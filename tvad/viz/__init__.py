"""Drawing arrays and records: overlays (masks, heatmaps, boxes, tracks) and plots. No model runs."""

from tvad.viz.overlays import (draw_boxes, draw_timelines, draw_track, frame_strip,  # noqa: F401
                                overlay_heatmap, overlay_mask)
from tvad.viz.plots import set_style  # noqa: F401
