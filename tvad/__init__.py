"""tvad: Text-guided Fine-Grained Video Anomaly Detection (T-VAD), runnable end to end.

    import tvad
    model = tvad.load("runs/cpu")                 # a run dir (its best model) or a checkpoint dir
    det = model.detect("clip.mp4")                # det.heatmaps (T, H, W), det.frame_scores, det.regions
    answer, history = model.chat("clip.mp4", "Is there any anomaly in this video?")
    cfg = tvad.preset("cpu")                      # configurations: presets `cpu` and `paper`
"""

__version__ = "0.1.0"

from tvad.config import Config, preset  # noqa: E402,F401


def load(path, device=None, **kw):
    """A trained T-VAD from a checkpoint or run directory: `.detect(frames)` and `.chat(video, question)`.

    Imported lazily so that `import tvad` (config, data, metrics) does not pull in transformers.
    """
    from tvad.model import load as _load

    return _load(path, device=device, **kw)


def __getattr__(name):
    if name == "TVAD":
        from tvad.model import TVAD

        return TVAD
    raise AttributeError(f"module 'tvad' has no attribute {name!r}")
