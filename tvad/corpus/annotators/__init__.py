"""Frame annotators behind one interface: `describe_frame(image, prompt, ...) -> FrameRecord`.

Three implementations (paper §3.3, "frame-wise full extraction"):

- `OracleAnnotator` ("oracle"): ground truth: the record's objects (category, attributes, box);
  deterministic, no pixels needed; the `cpu` preset's default.
- `LocalAnnotator` ("local"): a transformers Qwen2.5-VL checkpoint at any local path (or hub id),
  prompted with the structured prompt and asked for JSON. transformers is imported lazily.
- `HTTPAnnotator` ("http"): any OpenAI-compatible chat-completions endpoint with image input
  (hosted Qwen-VL, vLLM, ...). The API key comes from an environment variable and is never
  logged or stored; 429 / 5xx / timeouts / connection errors are retried with exponential
  backoff (or the server's Retry-After); a request budget caps the total number of HTTP requests.
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
`oracle`, `local`, `remote` (the HTTP annotator); `make_annotator` picks one by name.
"""

from tvad.corpus.annotators.base import (FRAME_PROMPT, PROMPT_VERSION, STATUSES, Annotator,  # noqa: F401
                                         AnnotatorError, AnswerError, FrameRecord, Instance, frame_prompt,
                                         prompt_hash, record_key)
from tvad.corpus.annotators.local import LocalAnnotator
from tvad.corpus.annotators.oracle import OracleAnnotator, object_box, object_centroid  # noqa: F401
from tvad.corpus.annotators.parsing import parse_answer  # noqa: F401
from tvad.corpus.annotators.remote import HTTPAnnotator, RequestBudget, encode_image  # noqa: F401


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
