"""Models: the frozen Qwen2.5-VL backbone (eq. 2-3), the AHD (eq. 4-7), the detection API.

    from tvad.model import load          # tvad.load: checkpoint or run dir -> detector
    det = load("runs/cpu").detect(frames)
"""

from tvad.model.detector import Detection, TVADDetector, load  # noqa: F401

__all__ = ["load", "TVADDetector", "Detection"]
