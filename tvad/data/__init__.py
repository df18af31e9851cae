"""Datasets: video reading, the common `Video` record, loaders, the synthetic generator, clips."""

from tvad.data.video import VideoError, VideoInfo, probe, read_frames  # noqa: F401
