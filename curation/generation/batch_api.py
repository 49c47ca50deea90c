"""The OpenAI Batch API (``--batch``): a unit's requests as one JSONL file, answered by the server within its
completion window at about half the price of direct requests and outside the rate limits.

The protocol, as OpenAI documents it and OpenAI-compatible servers follow it:

1. ``POST /v1/files`` (multipart, ``purpose=batch``) uploads the requests, one JSON line each:
   ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": <the request body>}``;
2. ``POST /v1/batches`` ``{"input_file_id", "endpoint": "/v1/chat/completions", "completion_window": "24h"}``
   creates the batch; ``GET /v1/batches/{id}`` says its ``status`` (validating, in_progress, finalizing,
   completed, failed, expired, cancelling, cancelled) and, once done, its ``output_file_id`` and
   ``error_file_id``;
3. ``GET /v1/files/{id}/content`` downloads them: one line per request,
   ``{"custom_id", "response": {"status_code", "body"}, "error"}``, in any order;
4. ``POST /v1/batches/{id}/cancel`` stops it.

The custom id is the request's fingerprint (usage.fingerprint), so results map back whatever their order and
a resumed unit recognises its own requests. This module only speaks HTTP; the worker (workers/jobs/generate.py)
stores the batch id with its unit, so a crash resumes polling instead of paying twice.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .backends import GenRequest, GenResponse, OpenAIChatBackend, _parse_body

ENDPOINT = "/v1/chat/completions"
DONE = ("completed", "failed", "expired", "cancelled")


class BatchError(RuntimeError):
    """The server refused a step of the protocol (the message says which, never the request's headers)."""


@dataclass(frozen=True)
class BatchState:
    batch_id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE


class BatchClient:
    def __init__(self, backend: OpenAIChatBackend, *, timeout_s: float = 120.0):
        self.backend = backend
        self.root = backend.base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _client(self):
        import httpx

        key = os.environ.get(self.backend.api_key_env) or os.environ.get("OPENAI_API_KEY")
        return httpx.Client(timeout=self.timeout_s, headers={"Authorization": f"Bearer {key}"} if key else {})

    def _call(self, method: str, path: str, **kw) -> Any:
        import httpx

        try:
            with self._client() as client:
                response = client.request(method, self.root + path, **kw)
        except httpx.HTTPError as exc:
            raise BatchError(f"{method} {path}: {exc.__class__.__name__}") from None
        if response.status_code >= 400:
            raise BatchError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}")
        return response

    # ---- the steps ---------------------------------------------------------------------------------
    def lines(self, requests: Sequence[GenRequest]) -> tuple[bytes, list[str]]:
        """The JSONL of the requests (one line per distinct fingerprint) and their custom ids, in order."""
        seen: dict[str, None] = {}
        out = []
        for request in requests:
            fp = self.backend.fingerprint(request)
            if fp in seen:
                continue
            seen[fp] = None
            out.append(json.dumps({"custom_id": fp, "method": "POST", "url": ENDPOINT, "body": self.backend.body(request)}, ensure_ascii=False))
        return ("\n".join(out) + "\n").encode("utf-8"), list(seen)

    def submit(self, requests: Sequence[GenRequest], *, window: str = "24h", metadata: dict[str, str] | None = None) -> tuple[str, str]:
        """Upload the requests and create the batch: (batch id, input file id)."""
        data, _ = self.lines(requests)
        uploaded = self._call("POST", "/files", files={"file": ("requests.jsonl", data, "application/jsonl")}, data={"purpose": "batch"}).json()
        file_id = uploaded.get("id")
        if not file_id:
            raise BatchError("POST /files: no file id in the answer")
        created = self._call("POST", "/batches", json={"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": window,
                                                        **({"metadata": metadata} if metadata else {})}).json()
        if not created.get("id"):
            raise BatchError("POST /batches: no batch id in the answer")
        return created["id"], file_id

    def state(self, batch_id: str) -> BatchState:
        data = self._call("GET", f"/batches/{batch_id}").json()
        return BatchState(batch_id, str(data.get("status")), data.get("output_file_id"), data.get("error_file_id"), data.get("request_counts"))

    def cancel(self, batch_id: str) -> None:
        self._call("POST", f"/batches/{batch_id}/cancel")

    def content(self, file_id: str) -> list[dict[str, Any]]:
        text = self._call("GET", f"/files/{file_id}/content").text
        out = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a broken line: its request is missing from the results, and asked directly
        return out

    def results(self, state: BatchState, seconds: float) -> dict[str, GenResponse]:
        """Each custom id's response from the output file and the error file; ``seconds``: the batch's
        turnaround, each request's latency. A request missing from both is not in the result."""
        out: dict[str, GenResponse] = {}
        for file_id in (state.output_file_id, state.error_file_id):
            if not file_id:
                continue
            for line in self.content(file_id):
                cid = line.get("custom_id")
                if not isinstance(cid, str):
                    continue
                response = line.get("response") or {}
                status = response.get("status_code")
                if status == 200 and isinstance(response.get("body"), dict):
                    parsed = _parse_body(None, response["body"], 1, seconds)
                    out[cid] = parsed if parsed is not None else GenResponse(None, None, "malformed response body", None, 1, seconds)
                else:
                    error = line.get("error") or {}
                    message = error.get("message") if isinstance(error, dict) else str(error)
                    out[cid] = GenResponse(None, None, f"HTTP {status}: {str(message)[:200]}" if status else f"batch error: {str(message)[:200]}", None, 1,
                                           seconds, permanent=bool(status and 400 <= int(status) < 500 and status != 429))
        return out


def wait(client: BatchClient, batch_id: str, *, poll_s: float, check=lambda: None, sleep=time.sleep) -> BatchState:
    """Poll until the batch is done; ``check`` (the unit's cancel and lease check) is called between polls."""
    while True:
        state = client.state(batch_id)
        if state.done:
            return state
        check()
        sleep(poll_s)
