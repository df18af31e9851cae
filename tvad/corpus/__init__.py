"""Text corpus construction (paper §3.3): frame-wise extraction through an annotator (oracle,
local Qwen2.5-VL, or an OpenAI-compatible endpoint), an append-only cache, temporal aggregation
into per-target timelines, narratives, anomaly-focused enhancement, mutual verification and the
phase A / phase B dialogue corpora.

    card = tvad.corpus.build_corpora({"train": train, "validation": val}, run.path("corpus"))
    tvad.corpus.describe_trajectory([(236, 198), (244, 196), None, ...], (476, 868))

Modules, in the order a build runs them: `annotators` (interface, parsing, oracle, local, http),
`cache`, `inflight` (requests kept in flight), `extraction`, `timelines`, `verification`, `narratives`, `dialogues`, `schema`, `card`,
`corpora` (`build_corpora` and the readers of its output).

`corpus` reads `tvad.data` records; it reaches a model only through the annotator interface.
"""

from tvad.corpus.annotators import (FRAME_PROMPT, AnnotatorError, AnswerError, FrameRecord, HTTPAnnotator,  # noqa: F401
                                    Instance, LocalAnnotator, OracleAnnotator, RequestBudget, annotator_from_config,
                                    frame_prompt, make_annotator, parse_answer, prompt_hash)
from tvad.corpus.cache import CacheError, FrameCache, read_records  # noqa: F401
from tvad.corpus.card import CorpusCard  # noqa: F401
from tvad.corpus.corpora import (CorpusError, build_corpora, check_no_leakage, format_dialogue,  # noqa: F401
                                 load_timelines, sample_dialogues)
from tvad.corpus.dialogues import clip_reference  # noqa: F401
from tvad.corpus.extraction import collect, extract, extract_all, focus_image  # noqa: F401
from tvad.corpus.inflight import AskReport, ask  # noqa: F401
from tvad.corpus.narratives import (appearance_phrasings, describe_appearance, describe_targets,  # noqa: F401
                                    real_clip_bleu, real_clip_trajectories,
                                    describe_trajectory, scene_phrasings, temporal_phrasings, trajectory_phrasings)
from tvad.corpus.schema import SCHEMA, SCHEMA_VERSION, CorpusSchemaError, load_corpus, validate_record  # noqa: F401
from tvad.corpus.timelines import Sighting, Timeline, associate, build_timelines, timeline_from_centroids, timeline_table  # noqa: F401
from tvad.corpus.verification import clip_timelines, merge_timelines  # noqa: F401
from tvad.data.geometry import REGION_WORDS, region_word  # noqa: F401
