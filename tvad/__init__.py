"""tvad: Text-guided Fine-Grained Video Anomaly Detection (T-VAD), runnable end to end.

The public face is small: `tvad.config.preset` for configurations; the model API (`tvad.load`)
arrives with the model modules.
"""

__version__ = "0.1.0"

from tvad.config import Config, preset  # noqa: E402,F401
