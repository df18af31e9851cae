"""Frame annotators behind one interface: `describe_frame(image, prompt, ...) -> FrameRecord`.

Three implementations (paper §3.3, "frame-wise full extraction"):

- `OracleAnnotator` ("oracle"): ground truth: the record's objects (category, attributes, box);
  deterministic, no pixels needed; the `cpu` preset's default.
- `LocalAnnotator` ("local"): a transformers Qwen2.5-VL checkpoint at any local path (or hub id),
  prompted with the structured prompt and asked for JSON. transformers is imported lazily.
- `HTTPAnnotator` ("http"): any OpenAI-compatible chat-completions endpoint with image input
  (hosted Qwen-VL, vLLM, ...). The API key comes from an environment variable and is never
  logged or stored; 429 / 5xx / timeouts / connection errors are retried with exponential
  backoff (or the server's Retry-After); a request budget caps the total number of HTTP requests;
  the corpus builder keeps `max_concurrency` of its requests in flight (`tvad.corpus.inflight`).
  Only http(s) base URLs; redirects are refused, never followed with the key; the timeout bounds
  the whole request.

A model's answer is parsed strictly (`parse_answer`: JSON checked against the instance schema,
one repair pass for code fences, prose around the JSON, trailing commas and Qwen's grounding
keys `bbox_2d`/`label`). An unusable answer, or a request that failed, gives a `FrameRecord`
with `status` "invalid_answer" or "request_failed" and the reason in `error`: counted, cached,
never an exception that stops the run.

    ann = make_annotator("http", base_url="http://127.0.0.1:8000/v1", model="qwen2.5-vl-7b",
                         api_key_env="DASHSCOPE_API_KEY", budget=5000)
    rec = ann.describe_frame(frame_uint8_hwc, frame_prompt(h, w), video="v1", frame=3)

Modules: `base` (prompt, records, errors, the `Annotator` protocol), `parsing` (`parse_answer`),
`oracle`, `local`, `remote` (the HTTP annotator); `make_annotator` picks one by name;
`annotator_from_config` turns the chain's `corpus` config section into its arguments.

    name, kw = annotator_from_config(run.config.corpus)
    build_corpora(videos, out_dir, annotator=name, annotator_kw=kw)
"""

import os
from typing import Any

from tvad.corpus.annotators.base import (FRAME_PROMPT, PROMPT_VERSION, STATUSES, Annotator,  # noqa: F401
                                         AnnotatorError, AnswerError, FrameRecord, Instance, frame_prompt,
                                         prompt_hash, record_key)
from tvad.corpus.annotators.local import LocalAnnotator
from tvad.corpus.annotators.oracle import OracleAnnotator, object_box, object_centroid  # noqa: F401
from tvad.corpus.annotators.parsing import parse_answer  # noqa: F401
from tvad.corpus.annotators.remote import HTTPAnnotator, RequestBudget, encode_image  # noqa: F401
from tvad.config import ENV_NAME, ConfigError


def make_annotator(kind: str | Annotator = "oracle", **kw) -> Annotator:
    """"oracle", "local" (path=..., device=...) or "http" (base_url=..., model=..., api_key_env=...);
    an annotator object is returned as is."""
    if not isinstance(kind, str):
        return kind
    if kind == "oracle":
        return OracleAnnotator()
    if kind == "local":
        if "path" not in kw:
            raise AnnotatorError("local annotator: give path= (a Qwen2.5-VL checkpoint directory or hub id)")
        return LocalAnnotator(**kw)
    if kind == "http":
        missing = [k for k in ("base_url", "model") if k not in kw]
        if missing:
            raise AnnotatorError(f"http annotator: missing {', '.join(missing)}")
        return HTTPAnnotator(**kw)
    raise AnnotatorError(f"unknown annotator {kind!r}; choose oracle, local or http")


def annotator_from_config(corpus_cfg: Any) -> tuple[str, dict]:
    """(name, kwargs) for `build_corpora(annotator=name, annotator_kw=kwargs)` from the `corpus`
    config section (`tvad.config.CorpusConfig`).

    oracle: ("oracle", {}). local: needs `corpus.model` (checkpoint directory or hub id). http: needs
    `corpus.endpoint` and `corpus.model`, and the environment variable named by `corpus.api_key_env`
    set (unless that is null). A missing setting raises `ConfigError` naming it and the `-p` that
    fixes it. The kwargs hold the variable's name, never the key.
    """
    c = corpus_cfg
    kind = getattr(c, "annotator", None)
    if kind == "oracle":
        return "oracle", {}
    if kind == "local":
        if not getattr(c, "model", None):
            raise ConfigError("corpus.annotator=local needs corpus.model: a Qwen2.5-VL checkpoint directory or hub "
                              "id, e.g. -p corpus.model=Qwen/Qwen2.5-VL-7B-Instruct")
        return "local", {"path": str(c.model), "device": str(c.device), "dtype": str(c.dtype),
                         "max_new_tokens": int(c.max_new_tokens), "max_pixels": int(c.max_pixels)}
    if kind == "http":
        missing = [f"corpus.{k} ({what})" for k, what in (
            ("endpoint", "the chat-completions base URL, e.g. -p corpus.endpoint=http://127.0.0.1:8000/v1"),
            ("model", "the model name the endpoint serves, e.g. -p corpus.model=qwen-vl-max"))
            if not getattr(c, k, None)]
        if missing:
            raise ConfigError(f"corpus.annotator=http needs {' and '.join(missing)}")
        env = getattr(c, "api_key_env", None)
        if env is not None:
            if not ENV_NAME.fullmatch(str(env)):  # never echoed: it may be the key itself
                raise ConfigError("corpus.api_key_env must be the NAME of an environment variable (upper-case "
                                  "letters, digits and _), not the key; the value given is not shown")
            if not os.environ.get(str(env)):
                raise ConfigError(f"corpus.annotator=http: the environment variable {env} named by corpus.api_key_env "
                                  f"is not set; export {env}=<your key>, or -p corpus.api_key_env=null for an "
                                  f"endpoint without authentication")
        return "http", {"base_url": str(c.endpoint), "model": str(c.model), "api_key_env": env,
                        "timeout": float(c.timeout), "max_retries": int(c.max_retries), "backoff": float(c.backoff),
                        "max_backoff": float(c.max_backoff), "budget": c.budget, "max_tokens": int(c.max_new_tokens),
                        "temperature": float(c.temperature), "image_format": str(c.image_format),
                        "max_concurrency": int(c.max_concurrency)}
    raise ConfigError(f"corpus.annotator: expected one of 'oracle', 'local', 'http', got {kind!r}")
