"""The `corpus` config section (which annotator builds the dialogue corpus, paper §3.3) and
`tvad.corpus.annotator_from_config`: defaults, YAML round trip, one-line errors for bad values and
missing settings, and the HTTP annotator's key: read from the environment variable the config names,
sent to a real local endpoint, and found in no file of the run directory."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from http_fixtures import send_json
from test_corpus_corpora import FakeVideo
from tvad.config import Config, ConfigError, CorpusConfig, preset
from tvad.corpus import annotator_from_config, build_corpora, load_corpus, make_annotator
from tvad.corpus.annotators import HTTPAnnotator, LocalAnnotator
from tvad.run import open_run

SECRET = "sk-test-9f8e7d6c5b4a-NEVER-WRITTEN"
KEY_ENV = "TVAD_TEST_CORPUS_KEY"


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_default_is_the_oracle_and_round_trips(name, tmp_path):
    cfg = preset(name)
    assert cfg.corpus.annotator == "oracle" and annotator_from_config(cfg.corpus) == ("oracle", {})
    over = preset(name, {"corpus.annotator": "http", "corpus.endpoint": "http://127.0.0.1:8000/v1",
                         "corpus.model": "qwen-vl-max", "corpus.budget": "500", "corpus.api_key_env": "null",
                         "corpus.timeout": "30"})
    assert (over.corpus.budget, over.corpus.api_key_env, over.corpus.timeout) == (500, None, 30.0)
    over.to_yaml(tmp_path / "c.yaml")
    assert Config.from_yaml(tmp_path / "c.yaml") == over and Config.from_yaml(over.to_yaml()) == over
    assert "corpus" in Config.from_yaml(tmp_path / "c.yaml").to_dict()


def test_paper_preset_is_ready_for_a_local_qwen():
    p = preset("paper", {"corpus.annotator": "local", "corpus.model": "Qwen/Qwen2.5-VL-7B-Instruct"})
    name, kw = annotator_from_config(p.corpus)
    assert name == "local" and kw == {"path": "Qwen/Qwen2.5-VL-7B-Instruct", "device": "cuda", "dtype": "bfloat16",
                                      "max_new_tokens": 1024, "max_pixels": 476 * 868}
    ann = make_annotator(name, **kw)  # the constructor takes exactly these (it loads nothing until used)
    assert isinstance(ann, LocalAnnotator) and ann.path == "Qwen/Qwen2.5-VL-7B-Instruct" and ann.device == "cuda"


BAD = [  # (key, value, the whole one-line message)
    ("corpus.annotator", "gpt4", "config key 'corpus.annotator': expected one of 'oracle', 'local', 'http', "
                                 "got 'gpt4'"),
    ("corpus.dtype", "int8", "config key 'corpus.dtype': expected one of 'float32', 'bfloat16', 'float16', "
                             "got 'int8'"),
    ("corpus.image_format", "gif", "config key 'corpus.image_format': expected one of 'jpeg', 'png', got 'gif'"),
    ("corpus.timeout", "0", "config key 'corpus.timeout': expected a number > 0, got '0'"),
    ("corpus.max_retries", "-1", "config key 'corpus.max_retries': expected an integer >= 0, got '-1'"),
    ("corpus.budget", "0", "config key 'corpus.budget': expected an integer > 0 or null, got '0'"),
    ("corpus.max_new_tokens", "many", "config key 'corpus.max_new_tokens': expected an integer > 0, got 'many'"),
    ("corpus.temperature", "-0.5", "config key 'corpus.temperature': expected a number >= 0, got '-0.5'"),
    ("corpus.api_key_env", "hfAbC123xyz", "config key 'corpus.api_key_env': expected the name of an environment "
     "variable (upper-case letters, digits and _, e.g. TVAD_API_KEY), got a 11-character value that is not one (not "
     "shown: it may be the key itself; put the key in the environment, its name here)"),  # a key that is a valid name
    ("corpus.endpoint", "127.0.0.1:8000/v1", "config key 'corpus.endpoint': expected an http:// or https:// URL "
                                             "with a host, e.g. http://127.0.0.1:8000/v1, got '127.0.0.1:8000/v1'"),
    ("corpus.endpoint", "https://bob:hunter2@api.example.com/v1",
     "config key 'corpus.endpoint': expected an http:// or https:// URL without user:password@ (the key comes "
     "from corpus.api_key_env), got 'https://***@api.example.com/v1'"),
    ("corpus.endpoint", f"https://api.example.com/v1?api-version=2024&api_key={SECRET}",
     "config key 'corpus.endpoint': expected a URL without credentials, got one with the query parameter(s) "
     "api_key (values not shown; the key comes from corpus.api_key_env)"),
    ("corpus.api_key_env", SECRET,
     f"config key 'corpus.api_key_env': expected the name of an environment variable (upper-case letters, "
     f"digits and _, e.g. TVAD_API_KEY), got a {len(SECRET)}-character value that is not one (not shown: it may be the key "
     f"itself; put the key in the environment, its name here)"),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v[:12]}" for k, v, _ in BAD])
def test_bad_values_are_one_line_config_errors(key, value, message):
    with pytest.raises(ConfigError) as e:
        preset("cpu", {key: value})
    assert str(e.value) == message
    assert not any(x in str(e.value) for x in ("hunter2", SECRET, "hfAbC123xyz"))


def test_unknown_corpus_key():
    with pytest.raises(KeyError, match="corpus.api_key'"):
        preset("cpu", {"corpus.api_key": "x"})


def test_missing_settings_are_named(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"^corpus.annotator=local needs corpus.model: .*-p corpus.model="):
        annotator_from_config(CorpusConfig(annotator="local"))
    with pytest.raises(ConfigError) as e:
        annotator_from_config(CorpusConfig(annotator="http"))
    assert str(e.value).startswith("corpus.annotator=http needs corpus.endpoint (") and "and corpus.model (" in str(e.value)
    with pytest.raises(ConfigError, match=r"needs corpus.model \(.*-p corpus.model=qwen-vl-max\)$"):
        annotator_from_config(CorpusConfig(annotator="http", endpoint="http://127.0.0.1:1/v1"))
    with pytest.raises(ConfigError, match=f"the environment variable {KEY_ENV} named by corpus.api_key_env is not set"):
        annotator_from_config(CorpusConfig(annotator="http", endpoint="http://127.0.0.1:1/v1", model="m",
                                           api_key_env=KEY_ENV))
    with pytest.raises(ConfigError, match="not the key; the value given is not shown$") as e:
        annotator_from_config(CorpusConfig(annotator="http", endpoint="http://127.0.0.1:1/v1", model="m",
                                           api_key_env=SECRET))  # built in Python, past the override check
    assert SECRET not in str(e.value)
    with pytest.raises(ConfigError, match="expected one of 'oracle', 'local', 'http', got 'gpt'"):
        annotator_from_config(CorpusConfig(annotator="gpt"))


def test_http_kwargs_build_the_annotator(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    c = preset("cpu", {"corpus.annotator": "http", "corpus.endpoint": "http://127.0.0.1:1/v1", "corpus.model": "m",
                       "corpus.api_key_env": KEY_ENV, "corpus.budget": 7, "corpus.max_retries": 1,
                       "corpus.image_format": "png"}).corpus
    name, kw = annotator_from_config(c)
    assert name == "http" and kw["api_key_env"] == KEY_ENV and SECRET not in json.dumps(kw)
    ann = make_annotator(name, **kw)
    assert isinstance(ann, HTTPAnnotator) and ann.budget.limit == 7 and ann.max_retries == 1
    assert (ann.base_url, ann.model, ann.image_format, ann.max_tokens) == ("http://127.0.0.1:1/v1", "m", "png", 1024)
    assert SECRET not in repr(ann)
    monkeypatch.delenv(KEY_ENV)
    no_auth = annotator_from_config(preset("cpu", {"corpus.annotator": "http", "corpus.model": "m",
                                                   "corpus.endpoint": "http://127.0.0.1:1/v1",
                                                   "corpus.api_key_env": "null"}).corpus)[1]
    assert no_auth["api_key_env"] is None and isinstance(make_annotator("http", **no_auth), HTTPAnnotator)


class _Endpoint(BaseHTTPRequestHandler):
    """A chat-completions endpoint answering every frame with one person box; records the auth headers."""

    auth: list = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Endpoint.auth.append(self.headers.get("Authorization"))
        answer = {"instances": [{"category": "person", "attributes": {"top": "red jacket"}, "box": [20, 48, 44, 72]}]}
        body = {"choices": [{"message": {"role": "assistant", "content": json.dumps(answer)}}]}
        send_json(self, 200, json.dumps(body).encode())

    def log_message(self, *a):  # quiet
        pass


def test_the_key_reaches_the_endpoint_and_no_file_of_the_run(tmp_path, monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(KEY_ENV, SECRET)
        _Endpoint.auth = []
        run = open_run(tmp_path / "run", "cpu", {
            "corpus.annotator": "http", "corpus.endpoint": f"http://127.0.0.1:{srv.server_address[1]}/v1",
            "corpus.model": "served-vl", "corpus.api_key_env": KEY_ENV, "corpus.max_retries": 0})
        name, kw = annotator_from_config(run.config.corpus)
        clip = FakeVideo("v1_c0", [dict(start=(30, 60), vel=(6, 0), anomaly=(2, 9), type="running")], num_frames=6)
        card = build_corpora({"train": [clip]}, run.path("corpus"), annotator=name, annotator_kw=kw)
    finally:
        srv.shutdown()
        srv.server_close()
    assert card.extraction["full"]["ok"] == 6 and _Endpoint.auth and set(_Endpoint.auth) == {f"Bearer {SECRET}"}
    rows = load_corpus(run.dir / "corpus" / "phase_a.train.jsonl")
    assert rows[0]["annotator"] == "http:served-vl" and "red jacket" in json.dumps(rows[0])
    written = [p for p in run.dir.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"config.yaml", "run.json", "frames.jsonl", "phase_a.train.jsonl", "card.json"}
    for p in written:
        assert SECRET.encode() not in p.read_bytes(), f"{p} holds the API key"
    assert f"api_key_env: {KEY_ENV}" in (run.dir / "config.yaml").read_text()
