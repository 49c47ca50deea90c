"""A local HTTP server that speaks the OpenAI chat-completions protocol, standing in for the LLM server
these machines cannot run. The requested ``model`` picks its behaviour:

* ``good``: well-formed tagged pairs built from the prompt (a JSON attribute answer for that task)
* ``malformed``: HTTP 200 with a body that is not JSON
* ``truncated``: the text stops inside a pair, ``finish_reason: length``
* ``slow``: answers after ``slow_seconds`` (longer than the client's time-out)
* ``flaky-429`` / ``flaky-500``: the first ``failures`` requests get HTTP 429 (with Retry-After) or 500
* ``echo``: puts what the customer wrote (context_1) into its answers, prompt injection included
* ``error-body`` / ``filtered``: HTTP 200 with an error object, or no content and ``content_filter``
* ``slow-retry-after``: HTTP 429 asking to come back in 30 s
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from .helpers import LocalHTTPServer


def _block(prompt: str, tag: str) -> str:
    # the last block of that name: the examples come before the item's own contexts
    found = re.findall(rf"<{tag}>\n(.*?)\n</{tag}>", prompt, re.DOTALL)
    return found[-1] if found else ""


def judge_answer(prompt: str) -> str:
    """A judge that says yes when every word of the ground truth is in the prediction, with its reason."""
    truth = re.search(r"Ground truth: (.*)", prompt)
    pred = re.search(r"Prediction: (.*)", prompt)
    words = set(re.findall(r"\w+", (truth.group(1) if truth else "").lower()))
    said = set(re.findall(r"\w+", (pred.group(1) if pred else "").lower()))
    if words and words <= said:
        return "Yes\nThe prediction states every fact of the ground truth."
    return f"No\nThe prediction misses: {', '.join(sorted(words - said)[:5])}."


def good_answer(prompt: str) -> str:
    context_2 = _block(prompt, "context_2")
    title = re.search(r"Title: (.*)", context_2)
    title = title.group(1).strip() if title else "the product"
    brand = re.search(r"Brand: (.*)", context_2)
    if "task: attribute extraction" in prompt:
        attrs = {"ProductType": "Unanswerable", "Name": title, "Brand": brand.group(1).strip() if brand else "Unanswerable", "Color": "Unanswerable",
                 "Count": "1", "Size": "Unanswerable", "ExpiryDate": "Unanswerable", "TargetGender": "Unanswerable"}
        return f"<question>What are the product's attributes?</question>\n<answer>{json.dumps(attrs)}</answer>"
    return (
        f"<question>What product is shown?</question>\n<answer>{title}.</answer>\n"
        f"<question>Is the packaging intact? Answer yes or no.</question>\n<answer>Yes.</answer>"
    )


class FakeChatServer(LocalHTTPServer):
    def __init__(self, *, latency: float = 0.0, slow_seconds: float = 5.0, failures: int = 2):
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.failures = failures
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth_headers: list[str | None] = []
        self.prompts: list[str] = []
        self._lock = threading.Lock()
        self._failed: dict[tuple[str, str], int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server._enter(self.headers.get("authorization"), body)
                try:
                    server._respond(self, body)
                finally:
                    server._leave()

        super().__init__(Handler)

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def _enter(self, auth, body):
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.auth_headers.append(auth)
            self.prompts.append(body.get("messages", [{}])[-1].get("content", ""))

    def _leave(self):
        with self._lock:
            self.in_flight -= 1

    @staticmethod
    def _send(handler, status: int, payload: bytes, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        try:
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _completion(self, handler, text: str, finish: str = "stop") -> None:
        payload = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}]}
        self._send(handler, 200, json.dumps(payload).encode())

    def _respond(self, handler, body) -> None:
        model = body.get("model", "good")
        prompt = body.get("messages", [{}])[-1].get("content", "")
        if self.latency:
            time.sleep(self.latency)
        if model.startswith("flaky-"):
            with self._lock:
                done = self._failed.get((model, prompt), 0)
                if done < self.failures:
                    self._failed[(model, prompt)] = done + 1
                    fail = True
                else:
                    fail = False
            if fail:
                status = 429 if model == "flaky-429" else 500
                self._send(handler, status, b'{"error": "try later"}', {"Retry-After": "0.05"} if status == 429 else None)
                return
            model = "good"
        if model == "judge":
            self._completion(handler, judge_answer(prompt))
        elif model == "judge-broken":
            self._completion(handler, "Hard to say, it depends on the lighting.")
        elif model == "good":
            self._completion(handler, good_answer(prompt))
        elif model == "malformed":
            self._send(handler, 200, b"<html>upstream error</html>")
        elif model == "truncated":
            text = good_answer(prompt)
            self._completion(handler, text[: int(len(text) * 0.7)], finish="length")
        elif model == "slow":
            time.sleep(self.slow_seconds)
            self._completion(handler, good_answer(prompt))
        elif model == "echo":
            customer = _block(prompt, "context_1")
            self._completion(handler, f"<question>What did the customer say?</question>\n<answer>{customer}</answer>\n" + good_answer(prompt))
        elif model == "error-body":
            self._send(handler, 200, json.dumps({"error": {"message": "model overloaded for this prompt"}}).encode())
        elif model == "filtered":
            payload = {"choices": [{"index": 0, "finish_reason": "content_filter", "message": {"role": "assistant", "content": None}}]}
            self._send(handler, 200, json.dumps(payload).encode())
        elif model == "slow-retry-after":
            self._send(handler, 429, b'{"error": "later"}', {"Retry-After": "30"})
        elif model == "bad-request":
            self._send(handler, 400, b'{"error": "unknown model"}')
        else:
            self._send(handler, 404, b'{"error": "no such model"}')
