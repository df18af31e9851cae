"""Shared by the tests that run a real HTTP server on 127.0.0.1 (the HTTP annotator's tests)."""

from __future__ import annotations


def send_json(handler, code: int, data: bytes, headers: dict | None = None) -> None:
    """Answer a `BaseHTTPRequestHandler` request with status `code` and the JSON body `data`."""
    handler.send_response(code)
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
