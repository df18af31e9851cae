"""Models: the frozen Qwen2.5-VL backbone (eq. 2-3), the AHD (eq. 4-7), the RAE (eq. 8-12) and the
full T-VAD with prompt injection (eq. 13); detection, chat, building and loading.

    from tvad.model import load            # = tvad.load: a checkpoint dir or a run dir -> TVAD
    model = load("runs/cpu")
    det = model.detect(frames)             # Detection: heatmaps, frame_scores, regions
    answer, history = model.chat("clip.mp4", "Is there any anomaly in this video?")

    detector = load_detector("runs/cpu")   # the backbone + stage-1 AHD alone (TVADDetector)
    ahd = build_ahd(backbone, cfg.ahd, backbone.resolve_layers(cfg.backbone.layers))  # stage 1's fresh AHD
    model = build_model(cfg, ahd_dir, use_rae=True, meta={})         # stage 2's fresh model
    save_model(model, out_dir)                                       # a checkpoint `load` restores

Modules: backbone (the frozen Qwen2.5-VL), tiny (the cpu preset's tiny backbone), ahd, rae, tvad
(eq. 13 and the TVAD model), chat (History, ChatSession), detector (the detection API and its
windows), decoder_heatmap (the decoder-attention baseline), build, checkpoint.
"""

from tvad.model.ahd import AHD, heat_to_frames, load_ahd, save_ahd  # noqa: F401
from tvad.model.backbone import Backbone, from_config, from_pretrained, vision_hash  # noqa: F401
from tvad.model.build import build_ahd, build_model  # noqa: F401
from tvad.model.chat import ChatSession, History  # noqa: F401
from tvad.model.checkpoint import find_model, load, save_model  # noqa: F401
from tvad.model.detector import Detection, TVADDetector, find_checkpoint, load_detector  # noqa: F401
from tvad.model.rae import RegionAwareAnomalyEncoder  # noqa: F401
from tvad.model.tvad import TVAD, ClipInputs, TVADError  # noqa: F401

__all__ = ["load", "TVAD", "TVADError", "ClipInputs", "build_model", "build_ahd", "save_model", "find_model",
           "load_detector", "TVADDetector", "Detection", "find_checkpoint", "AHD", "heat_to_frames", "load_ahd",
           "save_ahd", "RegionAwareAnomalyEncoder", "Backbone", "from_pretrained", "from_config", "vision_hash",
           "ChatSession", "History"]
