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

Every completion carries ``usage`` (prompt and completion tokens, counted by :func:`count_tokens`, or by the
tokenizer given as ``tokenizer``, chat template included, as vLLM counts) unless the model's name ends in
``-nousage`` (``good-nousage``: a server that sends none). A request with ``response_format`` of type
``json_schema`` gets its pairs as JSON of that shape, attribute answers as objects of the schema's keys.

It also speaks the Batch API (``/v1/files``, ``/v1/batches``, ``/v1/batches/{id}/cancel``,
``/v1/files/{id}/content``): a batch is worked through ``batch_seconds`` after it is created, in a thread,
each line answered as a direct request would be, its results in an output file and its failures in an error
file. In a batch, the model ``batch-500`` fails with a 500 (asked directly, it answers as ``good``).
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


def count_tokens(text: str) -> int:
    """The server's own count where no tokenizer is given: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def structured_answer(prompt: str, schema: dict) -> str:
    """good_answer's pairs as JSON of the requested schema ({"pairs": [{"question", "answer"}]})."""
    pairs = re.findall(r"<question>(.*?)</question>\n<answer>(.*?)</answer>", good_answer(prompt), re.DOTALL)
    answer_schema = schema["properties"]["pairs"]["items"]["properties"]["answer"]
    out = []
    for q, a in pairs:
        if answer_schema.get("type") == "object":
            given = json.loads(a)
            a = {k: str(given.get(k, "Unanswerable")) for k in answer_schema["properties"]}
        out.append({"question": q, "answer": a})
    return json.dumps({"pairs": out})


def _multipart_file(content_type: str, raw: bytes) -> bytes:
    """The uploaded file's bytes from a multipart/form-data body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    for part in message.iter_parts():
        if part.get_param("filename", header="content-disposition"):
            return part.get_payload(decode=True)
    raise ValueError("no file in the upload")


class FakeChatServer(LocalHTTPServer):
    def __init__(self, *, latency: float = 0.0, slow_seconds: float = 5.0, failures: int = 2, tokenizer: str | None = None,
                 batch_seconds: float = 0.3):
        self.latency = latency
        self.batch_seconds = batch_seconds
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_lines = 0  # requests answered through batches
        self.cancels: list[str] = []
        self._tokenizer = None
        if tokenizer:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.usage_sent: list[tuple[int, int]] = []
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

            def do_GET(self):
                server._batch_get(self)

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if not self.path.endswith("/chat/completions"):
                    server._batch_post(self, raw)
                    return
                body = json.loads(raw or b"{}")
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

    def usage(self, messages: list, text: str) -> tuple[int, int]:
        if self._tokenizer is None:
            return sum(count_tokens(m.get("content", "")) + 4 for m in messages), count_tokens(text)
        ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        return len(ids), len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _completion(self, handler, text: str, finish: str = "stop", body: dict | None = None) -> None:
        payload = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}]}
        if body is not None and not str(body.get("model", "")).endswith("-nousage"):
            prompt, completion = self.usage(body.get("messages", []), text)
            payload["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            with self._lock:
                self.usage_sent.append((prompt, completion))
        self._send(handler, 200, json.dumps(payload).encode())

    def _respond(self, handler, body) -> None:
        model = body.get("model", "good")
        prompt = body.get("messages", [{}])[-1].get("content", "")
        if self.latency:
            time.sleep(self.latency)
        if model.endswith("-nousage"):
            model = model[: -len("-nousage")]
        if model == "batch-500":  # fails only inside a batch
            model = "good"
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and model == "good":
            self._completion(handler, structured_answer(prompt, fmt["json_schema"]["schema"]), body=body)
            return
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
            self._completion(handler, good_answer(prompt), body=body)
        elif model == "malformed":
            self._send(handler, 200, b"<html>upstream error</html>")
        elif model == "truncated":
            text = good_answer(prompt)
            self._completion(handler, text[: int(len(text) * 0.7)], finish="length", body=body)
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

    # ---- the Batch API ----------------------------------------------------------------------------------
    def _json(self, handler, status: int, payload: dict) -> None:
        self._send(handler, status, json.dumps(payload).encode())

    def _batch_post(self, handler, raw: bytes) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.auth_headers.append(handler.headers.get("authorization"))
        if path == "/v1/files":
            try:
                data = _multipart_file(handler.headers.get("content-type", ""), raw)
            except ValueError as exc:
                self._json(handler, 400, {"error": {"message": str(exc)}})
                return
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
            self._json(handler, 200, {"id": file_id, "object": "file", "purpose": "batch", "bytes": len(data)})
        elif path == "/v1/batches":
            body = json.loads(raw or b"{}")
            if body.get("input_file_id") not in self.files or body.get("endpoint") != "/v1/chat/completions":
                self._json(handler, 400, {"error": {"message": "bad input file or endpoint"}})
                return
            with self._lock:
                batch_id = f"batch-{len(self.batches) + 1}"
                self.batches[batch_id] = {"id": batch_id, "object": "batch", "status": "validating", "input_file_id": body["input_file_id"],
                                          "output_file_id": None, "error_file_id": None, "metadata": body.get("metadata")}
            threading.Thread(target=self._work_batch, args=(batch_id,), daemon=True).start()
            self._json(handler, 200, self.batches[batch_id])
        elif path.startswith("/v1/batches/") and path.endswith("/cancel"):
            batch_id = path.split("/")[3]
            with self._lock:
                batch = self.batches.get(batch_id)
                if batch is None:
                    self._json(handler, 404, {"error": {"message": "no such batch"}})
                    return
                self.cancels.append(batch_id)
                if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                    batch["status"] = "cancelling"
            self._json(handler, 200, batch)
        else:
            self._json(handler, 404, {"error": {"message": "not found"}})

    def _batch_get(self, handler) -> None:
        parts = handler.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["v1", "batches"] and parts[2] in self.batches:
            with self._lock:
                payload = dict(self.batches[parts[2]])
            self._json(handler, 200, payload)
        elif len(parts) == 4 and parts[:2] == ["v1", "files"] and parts[3] == "content" and parts[2] in self.files:
            self._send(handler, 200, self.files[parts[2]], {"Content-Type": "application/jsonl"})
        else:
            self._json(handler, 404, {"error": {"message": "not found"}})

    def _work_batch(self, batch_id: str) -> None:
        time.sleep(self.batch_seconds)  # the queue before the batch is worked on; then each line takes the latency, 16 at a time
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] == "cancelling":
                batch["status"] = "cancelled"
                return
            batch["status"] = "in_progress"
            lines = self.files[batch["input_file_id"]].decode().splitlines()
        out, errors = [], []
        for line in filter(None, (x.strip() for x in lines)):
            request = json.loads(line)
            body = request["body"]
            model = str(body.get("model", ""))
            if model == "batch-500":
                errors.append({"id": f"r-{len(errors)}", "custom_id": request["custom_id"], "response": {"status_code": 500, "body": {}},
                               "error": {"message": "the batch worker failed"}})
                continue
            if model == "bad-request":
                errors.append({"id": f"r-{len(errors)}", "custom_id": request["custom_id"], "response": {"status_code": 400, "body": {}},
                               "error": {"message": "unknown model"}})
                continue
            prompt = body.get("messages", [{}])[-1].get("content", "")
            fmt = body.get("response_format") or {}
            text = structured_answer(prompt, fmt["json_schema"]["schema"]) if fmt.get("type") == "json_schema" else good_answer(prompt)
            completion = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}
            if not model.endswith("-nousage"):
                p, c = self.usage(body.get("messages", []), text)
                completion["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
                with self._lock:
                    self.usage_sent.append((p, c))
            out.append({"id": f"r-{len(out)}", "custom_id": request["custom_id"], "response": {"status_code": 200, "body": completion}, "error": None})
        if self.latency:
            time.sleep(self.latency * (len(out) + len(errors)) / 16)
        with self._lock:
            self.batch_lines += len(out)
            if batch["status"] == "cancelling":
                batch["status"] = "cancelled"
                return
            # the output in reverse order: results map back by custom_id, not by position
            for name, rows in (("output_file_id", out[::-1]), ("error_file_id", errors)):
                if rows:
                    file_id = f"file-{len(self.files) + 1}"
                    self.files[file_id] = "\n".join(json.dumps(r) for r in rows).encode()
                    batch[name] = file_id
            batch["request_counts"] = {"total": len(out) + len(errors), "completed": len(out), "failed": len(errors)}
            batch["status"] = "completed"

