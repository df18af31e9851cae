"""An open-set synthetic surveillance dataset, written in UBnormal's exact on-disk layout.

    from tvad.data import synthetic
    synthetic.generate("data/synthetic", num_videos={"train": 24, ...}, seed=0)   # or ensure(...)
    train = synthetic.load("data/synthetic", "train")       # = the UBnormal loader + sidecars
    synthetic.split_statistics(train + synthetic.load("data/synthetic", "test"))

Scenes are rendered procedurally (`tvad.data.render`): buildings, walkways, a verge with trees,
a two-lane road with a zebra crossing, grass; textures and noise; viewpoints (road horizontal or
vertical, mirrored, zoomed), lighting (day, overcast, dusk, night) and fog (name suffix ``_fog``,
one of UBnormal's irregular names). Agents: people (top/bottom colours, backpack), cyclists,
skateboarders, cars (colour), and the bags people leave. Normal behaviour: walking along
walkways, standing, crossing at the crossing, riding and driving with the traffic, skating.

Nine anomaly types, disjoint across train / validation / test as in UBnormal's open-set
protocol (`SPLIT_TYPES`): running, falling, fighting, vehicle_on_walkway | loitering, throwing |
jaywalking, wrong_way, abandoned_object. Two more splits: ``test_seen`` (new videos of the
training types: closed-set quality apart from open-set transfer) and ``pretrain`` (disjoint
videos of normal behaviour and every type, only for pretraining the tiny backbone).

An abnormal video has one anomalous agent (two for fighting; sometimes a second anomaly) among
normal agents; a normal video only normal agents. An anomalous object's track range is the
frames where its anomaly happens (and it is visible); frame labels are their union.

Written per video, exactly as UBnormal: ``Scene{S}/{video}.mp4``, per-frame grey id maps
``Scene{S}/{video}_annotations/{video}_{frame:04d}_gt.png`` (every object), ``{video}_tracks.txt``
(abnormal videos), split files ``scripts/{abnormal,normal}_{split}_video_names.txt`` (``training``,
``validation``, ``test``, ``test_seen``, ``pretrain``), the class table
``scripts/object_names_per_video.pkl``; plus a sidecar ``{video}_annotations/{video}_objects.json``
(per object: category, attributes, behaviour, anomaly type and ranges, per-frame boxes and
centroids, a plain-English caption, behaviour phases) and ``meta.json`` (parameters; written
last, it marks a complete dataset). Deterministic for a seed (masks, labels, objects, captions).

Modules: `specs` (splits, anomaly types, the plan), `agents` (normal behaviour), `anomalies` (the
nine anomaly makers), `rendering` (one video: placement, drawing, measured ranges), `captions`,
`generation` (writing the dataset), `loading` (reading it back).
"""

from tvad.data.stats import behaviour_statistics, split_statistics, type_statistics  # noqa: F401
from tvad.data.synthetic.generation import ensure, generate, generate_from_config, is_complete  # noqa: F401
from tvad.data.synthetic.loading import load, load_all  # noqa: F401
from tvad.data.synthetic.rendering import Rendered, render_spec  # noqa: F401
from tvad.data.synthetic.specs import (ANOMALY_TYPES, BEHAVIOURS, DEFAULT_NUM_VIDEOS, NORMAL_BEHAVIOURS,  # noqa: F401
                                       SPLIT_TYPES, SPLITS, VERSION, VideoSpec, plan)

__all__ = ["ANOMALY_TYPES", "SPLIT_TYPES", "SPLITS", "NORMAL_BEHAVIOURS", "BEHAVIOURS",
           "DEFAULT_NUM_VIDEOS", "generate", "ensure", "load", "load_all", "is_complete",
           "split_statistics", "type_statistics", "behaviour_statistics", "plan", "render_spec",
           "generate_from_config", "VideoSpec", "Rendered", "VERSION"]
