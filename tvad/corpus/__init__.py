"""Text corpus construction (paper §3.3): frame-wise extraction through an annotator (oracle,
local Qwen2.5-VL, or an OpenAI-compatible endpoint), an append-only cache, temporal aggregation
into per-target timelines, narratives, anomaly-focused enhancement, mutual verification and the
phase A / phase B dialogue corpora.

    card = tvad.corpus.build_corpora({"train": train, "validation": val}, run.path("corpus"))
    tvad.corpus.describe_trajectory([(236, 198), (244, 196), None, ...], (476, 868))

`corpus` reads `tvad.data` records; it reaches a model only through the annotator interface.
"""

from tvad.corpus.annotators import (FRAME_PROMPT, AnnotatorError, AnswerError, FrameRecord, HTTPAnnotator,  # noqa: F401
                                    Instance, LocalAnnotator, OracleAnnotator, RequestBudget, frame_prompt,
                                    make_annotator, parse_answer, prompt_hash)
from tvad.corpus.cache import CacheError, FrameCache, read_records  # noqa: F401
from tvad.corpus.dialogues import (SCHEMA, SCHEMA_VERSION, CorpusCard, CorpusError, CorpusSchemaError,  # noqa: F401
                                   build_corpora, check_no_leakage, clip_reference, clip_timelines, extract,
                                   focus_image, format_dialogue, load_corpus, load_timelines, merge_timelines,
                                   sample_dialogues, validate_record)
from tvad.corpus.narratives import (appearance_phrasings, describe_appearance, describe_targets,  # noqa: F401
                                    real_clip_bleu, real_clip_trajectories,
                                    describe_trajectory, scene_phrasings, temporal_phrasings, trajectory_phrasings)
from tvad.corpus.timelines import (REGION_WORDS, Detection, Timeline, associate, build_timelines,  # noqa: F401
                                   region_word, timeline_from_centroids, timeline_table)
