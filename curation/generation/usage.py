"""What LLM generation costs: tokens per request, a job's totals, prices, the cost so far and of what remains,
the estimate before spending, and the fingerprint a response is cached under. Pure: no store, no server.

Tokens come from the server's ``usage`` where it sends one (OpenAI's and vLLM's responses do). A server that
sends none gets its tokens counted here: with the model's tokenizer where one is given (``--tokenizer DIR``,
the same count the server would make, chat template included), else approximated as characters / 4 and
marked so (``counted_by``), because a figure nobody can check must say it is a guess.

Prices are per million tokens, input and output apart, as every provider lists them: given on the command
line (``--price-in``, ``--price-out``) or named (``--price NAME``) from a small YAML table the user keeps
(:func:`load_prices`). None are shipped: providers change them, and a stale price shown as fact is worse
than none.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

PRICES_ENV = "VITPRO_PRICES_FILE"
CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for English text with BPE tokenizers; only where nothing better exists

# How a request's tokens were counted: the server's own usage, the model's tokenizer here, a character
# estimate, or not at all (the template backend asks no model).
COUNTED_BY = ("server", "tokenizer", "estimate", "none")


# ---- failures --------------------------------------------------------------------------------------------
FAILURE_REASONS = ("timeout", "rate_limited", "server_error", "refused", "malformed", "filtered", "connection", "other")


def failure_reason(error: str | None, *, permanent: bool = False) -> str:
    """The reason a request got no text, as one of :data:`FAILURE_REASONS` (a job counts failures by it)."""
    text = (error or "").lower()
    if "timed out" in text:
        return "timeout"
    if "http 429" in text:
        return "rate_limited"
    if re.search(r"http 5\d\d", text):
        return "server_error"
    if "content filter" in text:
        return "filtered"
    if "malformed" in text:
        return "malformed"
    if re.search(r"http 4\d\d", text) or "answered with an error" in text or permanent:
        return "refused"
    if "error" in text or "connect" in text:
        return "connection"
    return "other"


# ---- the cache key ---------------------------------------------------------------------------------------
def fingerprint(messages: Sequence[dict[str, Any]], model: str, settings: dict[str, Any]) -> str:
    """The key a response is cached under: the messages, the model's name and every setting that changes what
    comes back (temperature, token limit, the structured-output schema). Not the server's address: the same
    model served elsewhere answers the same request alike, and a move to another host should not pay twice."""
    basis = json.dumps({"messages": list(messages), "model": model, "settings": settings}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()


# ---- prices ----------------------------------------------------------------------------------------------
class PriceError(ValueError):
    pass


@dataclass(frozen=True)
class Prices:
    """Per million tokens, in the user's currency (the table's ``currency``, USD unless said)."""

    input_per_million: float
    output_per_million: float
    name: str = ""
    currency: str = "USD"

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1_000_000


def prices_file(path: str | os.PathLike | None = None, home: str | os.PathLike | None = None) -> Path:
    """The price table: ``path``, else ``$VITPRO_PRICES_FILE``, else ``prices.yaml`` in the store's home."""
    if path:
        return Path(path)
    if os.environ.get(PRICES_ENV, "").strip():
        return Path(os.environ[PRICES_ENV].strip())
    return Path(home or ".") / "prices.yaml"


def load_prices(path: str | os.PathLike) -> dict[str, Prices]:
    """The named prices of a YAML table::

        currency: USD            # optional
        prices:
          my-vllm-8b: {input: 0.05, output: 0.08}     # per million tokens
          hosted-large: {input: 2.5, output: 10, batch_discount: 0.5}

    ``batch_discount`` (optional) is the share of the price a provider's Batch API charges; a name with
    ``@batch`` appended gives that price."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PriceError(f"no price table at {p}: write one (see docs/how-to/llm-server.md) or give --price-in and --price-out") from None
    except (OSError, yaml.YAMLError) as exc:
        raise PriceError(f"{p}: cannot read the price table: {exc}") from None
    table = data.get("prices") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise PriceError(f"{p}: no 'prices:' mapping in it")
    currency = str(data.get("currency") or "USD")
    out: dict[str, Prices] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
            raise PriceError(f"{p}: price {name!r} needs 'input' and 'output' (per million tokens)")
        try:
            pin, pout = float(entry["input"]), float(entry["output"])
            discount = float(entry.get("batch_discount", 1.0))
        except (TypeError, ValueError):
            raise PriceError(f"{p}: price {name!r}: input, output and batch_discount must be numbers") from None
        if min(pin, pout) < 0 or not all(map(math.isfinite, (pin, pout, discount))) or not 0 < discount <= 1:
            raise PriceError(f"{p}: price {name!r}: prices must be finite and >= 0, batch_discount in (0, 1]")
        out[str(name)] = Prices(pin, pout, str(name), currency)
        out[f"{name}@batch"] = Prices(pin * discount, pout * discount, f"{name}@batch", currency)
    return out


def named_price(name: str, path: str | os.PathLike) -> Prices:
    table = load_prices(path)
    if name not in table:
        known = ", ".join(sorted(k for k in table if not k.endswith("@batch"))) or "none"
        raise PriceError(f"no price named {name!r} in {path} (known: {known})")
    return table[name]


# ---- a job's totals ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UsageTotals:
    """Summed over a job's units (the unit results' counts, summed by the job's record)."""

    requests: int = 0  # sent to the server (retries of one request count once)
    cached: int = 0  # answered from the response cache: no request, no cost
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: int = 0  # requests whose tokens were approximated from characters (no usage, no tokenizer)
    seconds: float = 0.0  # summed request latency
    failures: dict[str, int] | None = None

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> "UsageTotals":
        failures = {k[len("failed_"):]: int(v) for k, v in result.items() if k.startswith("failed_") and v}
        return cls(int(result.get("llm_requests", 0)), int(result.get("cache_hits", 0)), int(result.get("prompt_tokens", 0)),
                   int(result.get("completion_tokens", 0)), int(result.get("tokens_estimated", 0)), float(result.get("llm_seconds", 0.0)),
                   failures or None)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def any(self) -> bool:
        return bool(self.requests or self.cached or self.failures)


def unit_counts(calls: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A unit's counts from its call rows (``llm_calls``), in the keys :meth:`UsageTotals.from_result` reads."""
    out: dict[str, Any] = {"llm_requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens_estimated": 0, "llm_seconds": 0.0}
    for c in calls:
        if c["outcome"] == "cached":
            out["cache_hits"] += 1
            continue
        out["llm_requests"] += 1
        out["llm_seconds"] += float(c.get("seconds") or 0.0)
        if c["outcome"] != "ok":
            out[f"failed_{c['outcome']}"] = out.get(f"failed_{c['outcome']}", 0) + 1
        out["prompt_tokens"] += int(c.get("prompt_tokens") or 0)
        out["completion_tokens"] += int(c.get("completion_tokens") or 0)
        out["tokens_estimated"] += c.get("counted_by") == "estimate"
    out["llm_seconds"] = round(out["llm_seconds"], 3)
    return out


@dataclass(frozen=True)
class CostReport:
    totals: UsageTotals
    prices: Prices | None
    wall_seconds: float | None  # the job's time so far
    items_done: int
    items_total: int

    @property
    def cost(self) -> float | None:
        return self.prices.cost(self.totals.prompt_tokens, self.totals.completion_tokens) if self.prices else None

    @property
    def projected_remaining(self) -> float | None:
        """The cost of the items not done yet, at the cost per item so far (None before any item is done)."""
        if self.cost is None or not self.items_done or self.items_total <= self.items_done:
            return None if self.cost is None or not self.items_done else 0.0
        return self.cost / self.items_done * (self.items_total - self.items_done)

    def to_dict(self) -> dict[str, Any]:
        t = self.totals
        return {"requests": t.requests, "cached": t.cached, "failed": t.failures or {}, "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens, "tokens_estimated": t.estimated, "latency_s": round(t.seconds, 3),
                "tokens_per_s": round(t.tokens / self.wall_seconds, 2) if self.wall_seconds else None,
                "requests_per_s": round(t.requests / self.wall_seconds, 3) if self.wall_seconds else None,
                "prices": None if self.prices is None else {"name": self.prices.name, "input_per_million": self.prices.input_per_million,
                                                            "output_per_million": self.prices.output_per_million, "currency": self.prices.currency},
                "cost": self.cost, "projected_remaining": self.projected_remaining}

    def lines(self) -> list[str]:
        t = self.totals
        out = [f"LLM requests: {t.requests:,} sent, {t.cached:,} from the cache"
               + (f", failed: {', '.join(f'{k} {v:,}' for k, v in sorted(t.failures.items()))}" if t.failures else "")]
        out.append(f"tokens: {t.prompt_tokens:,} in, {t.completion_tokens:,} out"
                   + (f" ({t.estimated:,} request(s) estimated from characters: the server sent no usage; give --tokenizer)" if t.estimated else ""))
        if self.wall_seconds and self.wall_seconds > 0 and t.requests:
            out.append(f"throughput: {t.tokens / self.wall_seconds:,.0f} tokens/s, {t.requests / self.wall_seconds:.2f} requests/s "
                       f"(mean latency {t.seconds / t.requests:.2f} s)")
        if self.prices is None:
            out.append("cost: no price given (--price-in/--price-out or --price NAME)")
        else:
            cur = self.prices.currency
            named = f" at {self.prices.name}" if self.prices.name else ""
            line = (f"cost: {_money(self.cost, cur)}{named} ({self.prices.input_per_million:g} in / {self.prices.output_per_million:g} out "
                    "per million tokens)")
            remaining = self.projected_remaining
            if remaining:
                line += f"; the {self.items_total - self.items_done:,} item(s) left: about {_money(remaining, cur)} more"
            out.append(line)
        return out


def _money(value: float | None, currency: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.4f} {currency}" if value < 1 else f"{value:,.2f} {currency}"


# ---- the estimate before spending -------------------------------------------------------------------------
# Completion tokens per pair asked when no earlier job of this model says better: a question and answer of a
# sentence or two each, with their tags, is 40-120 tokens (an attribute JSON answer up to ~150).
PAIR_TOKENS = (40, 120)


@dataclass(frozen=True)
class Estimate:
    requests: int
    cached: int
    prompt_tokens: int
    completion_low: int
    completion_high: int
    counted_by: str
    prices: Prices | None

    def cost_range(self) -> tuple[float, float] | None:
        if self.prices is None:
            return None
        return (self.prices.cost(self.prompt_tokens, self.completion_low), self.prices.cost(self.prompt_tokens, self.completion_high))

    def lines(self) -> list[str]:
        out = [f"requests: {self.requests:,}" + (f" ({self.cached:,} more answered from the cache, free)" if self.cached else ""),
               f"prompt tokens: {self.prompt_tokens:,} (counted with "
               f"{'the tokenizer' if self.counted_by == 'tokenizer' else 'characters / 4: give --tokenizer for an exact count'})",
               f"completion tokens: {self.completion_low:,} to {self.completion_high:,} (expected)"]
        costs = self.cost_range()
        if costs is None:
            out.append("cost: no price given (--price-in/--price-out or --price NAME)")
        else:
            out.append(f"cost: {_money(costs[0], self.prices.currency)} to {_money(costs[1], self.prices.currency)}")
        return out


def estimate(prompt_counts: Sequence[int], *, cached: int = 0, n_pairs: int, max_tokens: int, counted_by: str,
             prices: Prices | None, completion_per_request: tuple[float, float] | None = None) -> Estimate:
    """The expected cost of requests whose prompts count ``prompt_counts`` tokens: completions between the low
    and high expected lengths (from earlier requests of the model where there were some, else
    :data:`PAIR_TOKENS` per pair asked), never above the request's token limit."""
    low, high = completion_per_request or (PAIR_TOKENS[0] * n_pairs, PAIR_TOKENS[1] * n_pairs)
    low, high = min(low, max_tokens), min(high, max_tokens)
    n = len(prompt_counts)
    return Estimate(n, cached, int(sum(prompt_counts)), int(round(low * n)), int(round(high * n)), counted_by, prices)


# ---- counting tokens where the server says nothing --------------------------------------------------------
class TokenCounter:
    """Counts a request's prompt and a response's completion tokens: with a tokenizer folder (the model's own,
    chat template included) or characters / :data:`CHARS_PER_TOKEN`. ``counted_by`` says which."""

    def __init__(self, tokenizer_dir: str | None = None):
        self.tokenizer_dir = tokenizer_dir
        self._tok = None
        if tokenizer_dir:
            from transformers import AutoTokenizer

            try:
                self._tok = AutoTokenizer.from_pretrained(tokenizer_dir)
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot load a tokenizer from {tokenizer_dir}: {exc}") from None

    @property
    def counted_by(self) -> str:
        return "tokenizer" if self._tok is not None else "estimate"

    def prompt(self, messages: Sequence[dict[str, str]]) -> int:
        if self._tok is None:
            return _approx("".join(m.get("content", "") for m in messages)) + 4 * len(messages)  # role markers
        if getattr(self._tok, "chat_template", None):
            ids = self._tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            return len(ids)
        return len(self._tok("\n".join(m.get("content", "") for m in messages), add_special_tokens=True)["input_ids"])

    def completion(self, text: str | None) -> int:
        if not text:
            return 0
        if self._tok is None:
            return _approx(text)
        return len(self._tok(text, add_special_tokens=False)["input_ids"])


def _approx(text: str) -> int:
    return int(math.ceil(len(text) / CHARS_PER_TOKEN))


def percentile_pair(values: Sequence[float], low: float = 0.1, high: float = 0.9) -> tuple[float, float] | None:
    """The low and high percentiles of earlier completion lengths (None for fewer than 20: not enough to say)."""
    if len(values) < 20:
        return None
    ordered = sorted(values)
    pick: Callable[[float], float] = lambda q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]  # noqa: E731
    return pick(low), pick(high)
