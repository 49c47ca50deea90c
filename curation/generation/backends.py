"""Generation backends behind one interface: ``complete(requests) -> responses``.

* :class:`OpenAIChatBackend`: any OpenAI-compatible chat-completions server (vLLM, TGI, hosted models):
  bounded concurrency, time-outs, retries with back-off (429 honours Retry-After), a rate limit. The API
  key comes from the environment and is never put in a message, log or error.
* :class:`HFLocalBackend`: a transformers causal LM on this machine (the ``gpu`` queue).
* :class:`TemplateBackend`: no LLM; deterministic pairs from the item's own fields, each with the field that
  supports it. It answers in the same tagged format as the LLMs are asked to, so one parser validates everything.
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from .structured import STRUCTURED_NOTE, response_format
from .tasks import ItemContext
from .templates import template_pairs
from .usage import TokenCounter, fingerprint


@dataclass
class GenRequest:
    key: tuple[str, str]  # (item_id, task)
    messages: list[dict[str, str]]
    context: ItemContext
    task: str


@dataclass
class GenResponse:
    key: tuple[str, str]
    text: str | None
    error: str | None = None  # why there is no text (after the retries)
    finish_reason: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    permanent: bool = False  # asking again cannot help (refused request, content filter, error body)
    evidence: list[list[dict[str, str]]] | None = None  # per pair, in order: the fields that support it (templates)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    counted_by: str = "none"  # server | tokenizer | estimate | none (curation/generation/usage.py)
    cached: bool = False  # answered from the response cache, no request made
    fingerprint: str | None = None  # the cache key of its request


_shared: dict[tuple, Any] = {}
_shared_lock = threading.Lock()


def _process_wide(key: tuple, make):
    """One limiter / semaphore per process and server: the units a worker runs at once share it."""
    with _shared_lock:
        if key not in _shared:
            _shared[key] = make()
        return _shared[key]


class RateLimiter:
    """At most ``per_second`` request starts per second, shared by all threads (a token bucket)."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class OpenAIChatBackend:
    base_url: str
    model: str
    api_key_env: str = "VITPRO_LLM_API_KEY"
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    rate_limit: float | None = None  # requests per second
    temperature: float = 0.7
    max_tokens: int = 768
    structured: bool = False  # ask for the pairs as JSON of a schema (response_format json_schema)
    tokenizer: str | None = None  # the model's tokenizer folder: counts tokens where the server sends no usage
    name: str = field(default="openai", init=False)

    def __post_init__(self):
        from urllib.parse import urlsplit

        parts = urlsplit(self.base_url)
        if parts.username or parts.password:
            raise ValueError("put the API key in the environment (VITPRO_LLM_API_KEY), not in the base URL: it would be stored with every sample")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the base URL must be http(s)://..., not {self.base_url!r}")

    @property
    def model_id(self) -> str:
        # the settings that change what comes back are part of the model's identity
        return f"{self.base_url.rstrip('/')}#{self.model}#t{self.temperature:g}-m{self.max_tokens}" + ("-json" if self.structured else "")

    def body(self, request: GenRequest) -> dict[str, Any]:
        """The chat-completions request body for one request (the batch file's lines hold the same)."""
        body: dict[str, Any] = {"model": self.model, "messages": self.messages(request), "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.structured:
            body["response_format"] = response_format(request)
        return body

    def messages(self, request: GenRequest) -> list[dict[str, str]]:
        if not self.structured:
            return request.messages
        *head, last = request.messages
        return [*head, {**last, "content": last["content"] + STRUCTURED_NOTE}]

    def fingerprint(self, request: GenRequest) -> str:
        body = self.body(request)
        return fingerprint(body.pop("messages"), body.pop("model"), body)

    def counter(self) -> TokenCounter:
        """Counts tokens where the server sends no usage: one per process and tokenizer (loading one takes a while)."""
        return _process_wide(("counter", self.tokenizer), lambda: TokenCounter(self.tokenizer))

    def complete(self, requests: Sequence[GenRequest]) -> list[GenResponse]:
        import httpx

        key = os.environ.get(self.api_key_env) or os.environ.get("OPENAI_API_KEY")
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        server = (self.base_url.rstrip("/"), self.model)
        limiter = _process_wide(("rate", *server, self.rate_limit), lambda: RateLimiter(self.rate_limit))
        in_flight = _process_wide(("slots", *server, self.concurrency), lambda: threading.BoundedSemaphore(max(1, self.concurrency)))
        url = self.base_url.rstrip("/") + "/chat/completions"
        with httpx.Client(timeout=self.timeout_s, headers=headers) as client:
            with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
                return list(pool.map(lambda r: self._one(client, url, r, limiter, in_flight), requests))

    def _one(self, client, url: str, request: GenRequest, limiter: RateLimiter, in_flight) -> GenResponse:
        import httpx

        body = self.body(request)
        start = time.monotonic()
        error = "no attempt made"
        for attempt in range(1, self.max_retries + 2):
            retry_after = None
            with in_flight:
                limiter.wait()
                try:
                    response = client.post(url, json=body)
                except httpx.TimeoutException:
                    response, error = None, f"timed out after {self.timeout_s:g} s"
                except httpx.HTTPError as exc:
                    response, error = None, f"{exc.__class__.__name__}"  # never the request: its headers carry the key
            if response is not None:
                elapsed = time.monotonic() - start
                if response.status_code == 200:
                    result = _parse_completion(request.key, response, attempt, elapsed)
                    if result is not None:
                        return self.counted(result, body["messages"])
                    error = "malformed response body"
                elif response.status_code == 429 or response.status_code >= 500:
                    error = f"HTTP {response.status_code}"
                    retry_after = _retry_after(response.headers.get("retry-after"))
                else:
                    # 4xx other than 429: the request itself is wrong; retrying cannot help
                    return GenResponse(request.key, None, f"HTTP {response.status_code}: {response.text[:200]}", None, attempt, elapsed, permanent=True)
            if attempt <= self.max_retries:
                delay = min(self.max_backoff_s, retry_after if retry_after is not None else self.backoff_s * 2 ** (attempt - 1))
                time.sleep(delay * (1 + 0.1 * random.random()))
        return GenResponse(request.key, None, f"{error} (after {self.max_retries + 1} attempts)", None, self.max_retries + 1, time.monotonic() - start)

    def counted(self, result: GenResponse, messages: list[dict[str, str]]) -> GenResponse:
        """The response with its tokens: the server's usage, else counted here (usage.TokenCounter)."""
        if result.counted_by == "server":
            return result
        counter = self.counter()
        result.prompt_tokens = counter.prompt(messages)
        result.completion_tokens = counter.completion(result.text)
        result.counted_by = counter.counted_by
        return result


def _usage(data: dict) -> tuple[int, int] | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    try:
        prompt, completion = int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0)
    except (KeyError, TypeError, ValueError):
        return None
    return (prompt, completion) if prompt >= 0 and completion >= 0 else None


def _parse_completion(key, response, attempt: int, elapsed: float) -> GenResponse | None:
    """A 200 response: the text; or a permanent refusal (an error body, the content filter); or None
    for a body that is not a completion at all (worth asking again)."""
    try:
        data = response.json()
    except ValueError:
        return None
    return _parse_body(key, data, attempt, elapsed)


def _parse_body(key, data, attempt: int, elapsed: float) -> GenResponse | None:
    """A chat completion's JSON body (a direct answer's, or a batch output line's): see _parse_completion."""
    if isinstance(data, dict) and data.get("error"):
        err = data["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        return GenResponse(key, None, f"the server answered with an error: {str(message)[:200]}", None, attempt, elapsed, permanent=True)
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    finish = choice.get("finish_reason")
    usage = _usage(data)
    tokens = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "counted_by": "server"} if usage else {}
    if not isinstance(text, str):
        if finish == "content_filter":
            return GenResponse(key, None, "the server's content filter withheld the answer", finish, attempt, elapsed, permanent=True, **tokens)
        return None
    return GenResponse(key, text, None, finish, attempt, elapsed, **tokens)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(60.0, max(0.0, float(value)))
    except ValueError:
        return None


@dataclass
class HFLocalBackend:
    model_dir: str
    device: str = "cpu"
    dtype: str = "float32"
    max_new_tokens: int = 256
    batch_size: int = 4
    name: str = field(default="hf", init=False)

    def __post_init__(self):
        self._model = None
        self._tokenizer = None

    @property
    def model_id(self) -> str:
        return f"{self.model_dir}#m{self.max_new_tokens}"

    def fingerprint(self, request: GenRequest) -> str:
        return fingerprint(request.messages, self.model_dir, {"max_new_tokens": self.max_new_tokens, "decoding": "greedy"})

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from ..vlm.base import torch_dtype

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, padding_side="left")
            if self._tokenizer.pad_token is None:  # Llama and Mistral ship without one; batches need padding
                self._tokenizer.pad_token = self._tokenizer.eos_token
            self._model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch_dtype(self.dtype)).to(self.device).eval()
        return self._model, self._tokenizer

    def complete(self, requests: Sequence[GenRequest]) -> list[GenResponse]:
        import torch

        model, tokenizer = self._load()
        out: list[GenResponse] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            t0 = time.monotonic()
            texts = [tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False) for r in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                generated = model.generate(
                    **enc, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            new = generated[:, enc["input_ids"].shape[1] :]
            seconds = (time.monotonic() - t0) / len(chunk)
            for request, ids, mask in zip(chunk, new, enc["attention_mask"]):
                finished = tokenizer.eos_token_id is not None and bool((ids == tokenizer.eos_token_id).any())
                made = int((ids != tokenizer.pad_token_id).sum()) if tokenizer.pad_token_id is not None else len(ids)
                out.append(GenResponse(request.key, tokenizer.decode(ids, skip_special_tokens=True), None, "stop" if finished else "length", 1, seconds,
                                       prompt_tokens=int(mask.sum()), completion_tokens=made, counted_by="tokenizer"))
        return out


@dataclass
class TemplateBackend:
    """Deterministic pairs from the item's own fields (``templates.py``), each with its evidence."""

    name: str = field(default="template", init=False)
    model_id: str = field(default="template-v3", init=False)

    def complete(self, requests: Sequence[GenRequest]) -> list[GenResponse]:
        out = []
        for r in requests:
            made = template_pairs(r.context, r.task)
            out.append(GenResponse(r.key, _tagged([(p.question, p.answer) for p in made]) if made else "", evidence=[p.evidence for p in made]))
        return out

    def pairs(self, item: ItemContext, task: str) -> list[tuple[str, str]]:
        return [(p.question, p.answer) for p in template_pairs(item, task)]


def _tagged(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"<question>{q}</question>\n<answer>{a}</answer>" for q, a in pairs)
