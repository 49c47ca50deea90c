"""What LLM generation costs (issue 29): tokens per request from the server's usage or counted here, a job's
totals and cost at its prices with the projected cost of what remains, the estimate before spending, the
response cache, and structured outputs. Against a local server that speaks the chat-completions protocol
over real HTTP (tests/fake_llm.py), on the real ABO listings."""
from __future__ import annotations

import json

import pytest

from config.settings import load_settings
from curation.generation import OpenAIChatBackend, PromptTemplate, build_requests, process_responses, usage
from curation.generation.structured import attribute_keys, pair_schema
from db.store import init_store, open_store
from jobs.generate import GenerateJob
from jobs.ingest import IngestJob

from .fake_llm import FakeChatServer, count_tokens
from .test_generation import _ctx, _run_job


# ---- the pure parts --------------------------------------------------------------------------------------
@pytest.mark.parametrize("error, permanent, reason", [
    ("timed out after 60 s (after 5 attempts)", False, "timeout"), ("HTTP 429 (after 5 attempts)", False, "rate_limited"),
    ("HTTP 503 (after 5 attempts)", False, "server_error"), ("HTTP 400: {\"error\": \"unknown model\"}", True, "refused"),
    ("the server's content filter withheld the answer", True, "filtered"), ("malformed response body (after 5 attempts)", False, "malformed"),
    ("the server answered with an error: overloaded", True, "refused"), ("ConnectError (after 5 attempts)", False, "connection"),
])
def test_a_failure_is_counted_by_its_reason(error, permanent, reason):
    assert usage.failure_reason(error, permanent=permanent) == reason


def test_the_fingerprint_is_the_request_not_the_server():
    msgs = [{"role": "user", "content": "a photo"}]
    one = usage.fingerprint(msgs, "m", {"temperature": 0.7, "max_tokens": 768})
    assert one == usage.fingerprint(list(msgs), "m", {"max_tokens": 768, "temperature": 0.7})  # key order does not matter
    assert len({one, usage.fingerprint(msgs, "other", {"temperature": 0.7, "max_tokens": 768}),
                usage.fingerprint(msgs, "m", {"temperature": 0.0, "max_tokens": 768}),
                usage.fingerprint([{"role": "user", "content": "a photo."}], "m", {"temperature": 0.7, "max_tokens": 768})}) == 4
    a = OpenAIChatBackend(base_url="http://one:8000/v1", model="m")
    b = OpenAIChatBackend(base_url="http://two:9000/v1", model="m")
    request = build_requests([_ctx()], ["recognition"], PromptTemplate.load())[0]
    assert a.fingerprint(request) == b.fingerprint(request)  # the same model on another host answers alike
    assert a.fingerprint(request) != OpenAIChatBackend(base_url="http://one:8000/v1", model="m", structured=True).fingerprint(request)


def test_named_prices_come_from_the_users_table(tmp_path):
    table = tmp_path / "prices.yaml"
    table.write_text("currency: EUR\nprices:\n  small: {input: 0.2, output: 0.6}\n  big: {input: 3, output: 12, batch_discount: 0.5}\n")
    prices = usage.load_prices(table)
    assert prices["small"] == usage.Prices(0.2, 0.6, "small", "EUR")
    assert prices["big@batch"].input_per_million == 1.5 and prices["big@batch"].output_per_million == 6
    assert prices["big"].cost(2_000_000, 500_000) == pytest.approx(6 + 6)
    with pytest.raises(usage.PriceError, match="no price named 'medium'.*known: big, small"):
        usage.named_price("medium", table)
    with pytest.raises(usage.PriceError, match="no price table at .*missing.yaml"):
        usage.load_prices(tmp_path / "missing.yaml")
    table.write_text("prices:\n  bad: {input: -1, output: 2}\n")
    with pytest.raises(usage.PriceError, match="'bad': prices must be finite and >= 0"):
        usage.load_prices(table)
    table.write_text("prices:\n  half: {input: 1}\n")
    with pytest.raises(usage.PriceError, match="'half' needs 'input' and 'output'"):
        usage.load_prices(table)


def test_the_cost_so_far_and_of_what_remains():
    totals = usage.UsageTotals.from_result({"llm_requests": 40, "cache_hits": 10, "prompt_tokens": 400_000, "completion_tokens": 100_000,
                                            "llm_seconds": 80.0, "failed_timeout": 2, "failed_rate_limited": 0})
    assert totals.failures == {"timeout": 2} and totals.tokens == 500_000
    report = usage.CostReport(totals, usage.Prices(0.5, 2.0, "x"), wall_seconds=50.0, items_done=25, items_total=100)
    assert report.cost == pytest.approx(0.2 + 0.2)
    assert report.projected_remaining == pytest.approx(0.4 / 25 * 75)
    lines = report.lines()
    assert lines[0] == "LLM requests: 40 sent, 10 from the cache, failed: timeout 2"
    assert "10,000 tokens/s, 0.80 requests/s (mean latency 2.00 s)" in lines[2]
    assert lines[3].startswith("cost: 0.4000 USD at x") and "the 75 item(s) left: about 1.20 USD more" in lines[3]
    assert usage.CostReport(totals, None, 50.0, 25, 100).lines()[-1].startswith("cost: no price given")


def test_the_estimate_expects_completions_from_history_or_per_pair():
    est = usage.estimate([100, 200, 300], cached=2, n_pairs=3, max_tokens=768, counted_by="tokenizer", prices=usage.Prices(1.0, 4.0))
    assert (est.requests, est.cached, est.prompt_tokens) == (3, 2, 600)
    assert (est.completion_low, est.completion_high) == (3 * 120, 3 * 360)  # 40-120 tokens a pair, 3 pairs a request
    assert est.cost_range() == pytest.approx(((600 + 4 * 360) / 1e6, (600 + 4 * 1080) / 1e6))
    capped = usage.estimate([10], n_pairs=20, max_tokens=256, counted_by="estimate", prices=None, completion_per_request=(50.0, 900.0))
    assert (capped.completion_low, capped.completion_high) == (50, 256)  # never above the token limit
    assert usage.percentile_pair(list(range(19))) is None and usage.percentile_pair(list(range(101))) == (10, 90)


# ---- the client: tokens from the server, or counted here ----------------------------------------------------
def test_tokens_are_the_servers_usage_or_counted_with_the_models_tokenizer(tiny_models):
    requests = build_requests([_ctx(), _ctx(item_id="i2")], ["recognition"], PromptTemplate.load())
    with FakeChatServer() as srv:
        responses = OpenAIChatBackend(base_url=srv.base_url, model="good").complete(requests)
        assert [(r.prompt_tokens, r.completion_tokens) for r in responses] == srv.usage_sent and {r.counted_by for r in responses} == {"server"}
        # a server that sends no usage: characters / 4, marked as an estimate
        bare = OpenAIChatBackend(base_url=srv.base_url, model="good-nousage").complete(requests)
        assert {r.counted_by for r in bare} == {"estimate"}
        text = requests[0].messages[0]["content"] + requests[0].messages[1]["content"]
        assert bare[0].prompt_tokens == -(-len(text) // 4) + 8 and bare[0].completion_tokens == -(-len(bare[0].text) // 4)
    # with the model's tokenizer: the count a server using it makes (chat template included)
    tok = str(tiny_models["llama"])
    with FakeChatServer(tokenizer=tok) as srv:
        served = OpenAIChatBackend(base_url=srv.base_url, model="good").complete(requests)
        counted = OpenAIChatBackend(base_url=srv.base_url, model="good-nousage", tokenizer=tok).complete(requests)
    assert {r.counted_by for r in counted} == {"tokenizer"}
    assert [(r.prompt_tokens, r.completion_tokens) for r in counted] == [(r.prompt_tokens, r.completion_tokens) for r in served]


def test_structured_outputs_ask_for_the_tasks_schema_and_are_still_validated():
    item = _ctx(kind="catalog", feedback_text=None, issue_type=None, product=None, title="Aurelia Argan Oil Shampoo 250 ml",
                attributes={"Color": "Blue", "item_form": "liquid"})
    requests = build_requests([item], ["recognition", "attribute_extraction"], PromptTemplate.load())
    backend = OpenAIChatBackend(base_url="http://127.0.0.1:1/v1", model="good", structured=True)
    attr = next(r for r in requests if r.task == "attribute_extraction")
    body = backend.body(attr)
    schema = body["response_format"]["json_schema"]["schema"]
    answer = schema["properties"]["pairs"]["items"]["properties"]["answer"]
    assert body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["strict"] is True
    assert list(answer["properties"]) == attribute_keys(attr) and attribute_keys(attr)[:2] == ["Color", "ItemForm"]
    assert answer["additionalProperties"] is False and answer["required"] == attribute_keys(attr)
    assert pair_schema(requests[0])["properties"]["pairs"]["items"]["properties"]["answer"] == {"type": "string"}
    assert body["messages"][-1]["content"].endswith("the rules above about what to write still hold.")
    assert backend.model_id.endswith("-json") and not OpenAIChatBackend(base_url="http://x/v1", model="good").model_id.endswith("-json")
    with FakeChatServer() as srv:
        backend = OpenAIChatBackend(base_url=srv.base_url, model="good", structured=True)
        responses = backend.complete(requests)
    assert all(json.loads(r.text)["pairs"] for r in responses)  # JSON, not tagged text
    outcome = process_responses(requests, responses, backend="openai", model_id=backend.model_id, prompt_version="v")
    assert sorted((s.question, s.answer) for s in outcome.samples if s.task == "recognition") == [
        ("Is the packaging intact? Answer yes or no.", "Yes."), ("What product is shown?", "Aurelia Argan Oil Shampoo 250 ml.")]
    values = json.loads(next(s.answer for s in outcome.samples if s.task == "attribute_extraction"))
    assert values["Color"] == "Blue" and values["Name"] == "Aurelia Argan Oil Shampoo 250 ml"  # the item's own values filled in
    assert not [r for _, _, r, _ in outcome.rejects if r.reason != "duplicate"]


# ---- a job: totals, calls, cost, cache --------------------------------------------------------------------
def _ingest_abo(shared_data) -> None:
    init_store(load_settings().store)
    params = IngestJob(source=str(shared_data / "abo-samples" / "listings.jsonl"), format=None, mapping=None, name=None, image_root=None, redact=True).params()
    assert _run_job("ingest", params).status == "succeeded"


def test_a_job_records_every_request_and_a_rerun_reads_the_cache(home, shared_data):
    _ingest_abo(shared_data)
    lake = open_store(load_settings().store)
    with FakeChatServer() as srv:
        params = GenerateJob(backend="openai", openai=OpenAIChatBackend(base_url=srv.base_url, model="good"), tasks=["recognition", "attribute_extraction"],
                             items_per_unit=2, price_in=0.5, price_out=2.0).params()
        job = _run_job("generate", params)
        sent = list(srv.usage_sent)
        calls = lake.fetchall("SELECT outcome, prompt_tokens, completion_tokens, counted_by, seconds > 0, job_id FROM llm_calls ORDER BY prompt_tokens")
        assert len(calls) == srv.requests == len(sent) == 6 and {c[0] for c in calls} == {"ok"} and {c[3] for c in calls} == {"server"}
        assert sorted((c[1], c[2]) for c in calls) == sorted(sent) and all(c[4] for c in calls) and {c[5] for c in calls} == {job.id}
        pin, pout = sum(p for p, _ in sent), sum(c for _, c in sent)
        assert (job.counts["llm_requests"], job.counts["cache_hits"], job.counts["prompt_tokens"], job.counts["completion_tokens"]) == (6, 0, pin, pout)
        from jobs.cost import cost_report

        report = cost_report(job)
        assert report.cost == pytest.approx((pin * 0.5 + pout * 2.0) / 1e6) and report.projected_remaining == 0.0
        assert lake.scalar("SELECT count(*) FROM llm_cache") == 6

        # the units died before writing their samples (their answers were stored when they came): a rerun pays nothing
        lake.transaction(lambda con: [con.execute(f"DELETE FROM {t}") for t in ("samples", "generation_requests", "generation_rejects")])
        again = _run_job("generate", params)
        assert srv.requests == 6 and (again.counts["cache_hits"], again.counts["llm_requests"], again.counts["prompt_tokens"]) == (6, 0, 0)
        assert lake.scalar("SELECT count(*) FROM samples") > 0
        assert any("6 of 6 request(s)" in line or "request(s) answered from the response cache" in line
                   for line in _log(again.id))
        # --no-cache asks again (and stores nothing twice)
        lake.transaction(lambda con: [con.execute(f"DELETE FROM {t}") for t in ("samples", "generation_requests", "generation_rejects")])
        fresh = _run_job("generate", {**params, "cache": False})
        assert srv.requests == 12 and fresh.counts["llm_requests"] == 6 and fresh.counts["cache_hits"] == 0
        assert lake.scalar("SELECT count(*) FROM llm_cache") == 6


def _log(job_id: str) -> list[str]:
    from db.app import jobs as jobs_db
    from db.app.engine import write_engine

    return [line.message for line in jobs_db.log_tail(write_engine(load_settings().app_url), job_id, 200)]


def test_failures_are_counted_by_reason_and_cost_nothing(home, shared_data):
    _ingest_abo(shared_data)
    with FakeChatServer() as srv:
        params = GenerateJob(backend="openai", openai=OpenAIChatBackend(base_url=srv.base_url, model="bad-request"), tasks=["recognition"]).params()
        job = _run_job("generate", params)
    assert job.counts["failed_refused"] == 3 and job.counts["llm_requests"] == 3 and job.counts["prompt_tokens"] == 0
    lake = open_store(load_settings().store)
    assert lake.fetchall("SELECT DISTINCT outcome FROM llm_calls") == [("refused",)] and lake.scalar("SELECT count(*) FROM llm_cache") == 0


# ---- the command line ------------------------------------------------------------------------------------
def test_estimate_prices_and_the_cost_in_jobs_show_and_the_report(home, shared_data, cli, inprocess_worker, tiny_models, tmp_path):
    inprocess_worker("cpu")
    cli("ingest", str(shared_data / "abo-samples" / "listings.jsonl"), check=True)
    tok = str(tiny_models["llama"])
    (load_settings().home / "prices.yaml").write_text("prices:\n  local-8b: {input: 0.25, output: 1.0}\n")
    with FakeChatServer(tokenizer=tok) as srv:
        base = ("generate", "--backend", "openai", "--base-url", srv.base_url, "--model", "good", "--tasks", "recognition,attribute_extraction")
        est = cli(*base, "--tokenizer", tok, "--price", "local-8b", "--estimate", check=True)
        assert srv.requests == 0 and "nothing was sent to the server" in est.stdout
        estimated = int(est.stdout.split("prompt tokens: ", 1)[1].split(" ", 1)[0].replace(",", ""))
        assert "requests: 6" in est.stdout and "(counted with the tokenizer)" in est.stdout and "cost: " in est.stdout
        out = cli(*base, "--tokenizer", tok, "--price", "local-8b", check=True)
        assert "succeeded" in out.stdout and srv.requests == 6
        counted = sum(p for p, _ in srv.usage_sent)
        assert estimated == counted  # the same tokenizer and chat template as the server's count
        again = cli(*base, "--tokenizer", tok, "--price", "local-8b", "--estimate", check=True)
        assert "requests: 0" in again.stdout  # everything is done: nothing left to pay for
    job_id = out.stdout.split("job ", 1)[1].split()[0].rstrip(":")
    shown = cli("jobs", "show", job_id, check=True).stdout
    completion = sum(c for _, c in srv.usage_sent)
    assert f"llm       tokens: {counted:,} in, {completion:,} out" in shown
    assert f"llm       cost: {(counted * 0.25 + completion) / 1e6:,.4f} USD at local-8b (0.25 in / 1 out per million tokens)" in shown
    data = json.loads(cli("jobs", "show", job_id, "--json", check=True).stdout)
    assert data["llm"]["prompt_tokens"] == counted and data["llm"]["prices"]["name"] == "local-8b"
    report = json.loads(cli("generate", "report", "--json").stdout)
    assert [(j["job_id"], j["requests"], j["prompt_tokens"]) for j in report["llm_jobs"]] == [(job_id, 6, counted)]
    assert report["llm_jobs"][0]["cost"] == pytest.approx(data["llm"]["cost"])
    bad = cli(*base, "--price", "nope")
    assert bad.returncode == 2 and "--price: no price named 'nope'" in bad.stderr and "known: local-8b" in bad.stderr
    bad = cli(*base, "--price-in", "1")
    assert bad.returncode == 2 and "give both prices" in bad.stderr
    bad = cli("generate", "--backend", "template", "--estimate")
    assert bad.returncode != 0 and "costs nothing" in bad.stderr


def test_counting_tokens_without_a_tokenizer_is_marked_as_an_estimate():
    counter = usage.TokenCounter()
    assert counter.counted_by == "estimate" and counter.completion("abcdefgh") == 2 and counter.completion(None) == 0
    assert counter.prompt([{"role": "user", "content": "abcd"}]) == 1 + 4
    assert count_tokens("Aurelia, 250 ml.") == 5
    with pytest.raises(ValueError, match="cannot load a tokenizer from"):
        usage.TokenCounter("/nonexistent/tokenizer")


# ---- the Batch API ------------------------------------------------------------------------------------------
class _UnitCtx:
    """A unit's context for calling the handler directly (as a worker would), with a check() the test controls."""

    def __init__(self, engine, job_id: str, unit, params: dict, check=None):
        from jobs.registry import spec_for

        self.params, self.payload, self.job_id, self.run_id = params, unit.payload, job_id, unit.id
        self.spec = spec_for("generate").from_params(params)
        self.lake = open_store(load_settings().store)
        self.engine = engine
        self.lines: list[str] = []
        self._check = check

    def check(self):
        if self._check:
            self._check()

    def progress(self, n):
        pass

    def log(self, message, level="info"):
        self.lines.append(message)


def _planned_units(params: dict):
    """The job created and planned (its work units listed, none run)."""
    from db.app import jobs as jobs_db
    from db.app.engine import write_engine
    from db.app.models import PHASE_WORK
    from workers.runtime import execute_unit

    engine = write_engine(load_settings().app_url)
    job_id, queue = jobs_db.create_job(engine, kind="generate", queue="cpu", params=params, launched_by="t")
    execute_unit(queue[0][0], send=lambda _: None)
    return engine, job_id, [u for u in jobs_db.job_units(engine, job_id) if u.phase == PHASE_WORK]


def test_batch_mode_gives_the_direct_answers_and_a_crashed_unit_polls_its_batch_again(home, shared_data, monkeypatch):
    from curation.generation import batch_api
    from workers.jobs import generate as gen_job

    _ingest_abo(shared_data)
    lake = open_store(load_settings().store)
    with FakeChatServer(batch_seconds=0.2) as srv:
        openai = OpenAIChatBackend(base_url=srv.base_url, model="good")
        direct = _run_job("generate", GenerateJob(backend="openai", openai=openai, tasks=["recognition", "attribute_extraction"]).params())
        want = sorted(lake.fetchall("SELECT item_id, task, question, answer FROM samples"))
        usage_direct = (direct.counts["prompt_tokens"], direct.counts["completion_tokens"])
        lake.transaction(lambda con: [con.execute(f"DELETE FROM {t}") for t in ("samples", "generation_requests", "generation_rejects")])

        params = GenerateJob(backend="openai", openai=openai, tasks=["recognition", "attribute_extraction"], batch=True, batch_poll_s=0.05,
                             cache=False).params()
        engine, job_id, units = _planned_units(params)
        assert len(units) == 1
        real_wait = batch_api.wait

        def dies(*a, **k):  # the worker dies while the server works on the batch (after it was submitted and recorded)
            raise KeyboardInterrupt("worker died")

        monkeypatch.setattr(batch_api, "wait", dies)
        first = _UnitCtx(engine, job_id, units[0], params)
        with pytest.raises(KeyboardInterrupt):
            gen_job.run(first)
        assert len(srv.batches) == 1 and lake.scalar("SELECT count(*) FROM samples") == 0
        assert lake.fetchall("SELECT status FROM llm_batches") == [("submitted",)]
        monkeypatch.setattr(batch_api, "wait", real_wait)
        again = _UnitCtx(engine, job_id, units[0], params)  # the unit, run again by another worker
        result = gen_job.run(again)
        assert len(srv.batches) == 1 and srv.batch_lines == 6 and srv.requests == 6  # no second batch, no direct request
        assert any("polling it again" in line for line in again.lines)
        assert sorted(lake.fetchall("SELECT item_id, task, question, answer FROM samples")) == want  # the direct answers, exactly
        assert (result["llm_requests"], result["prompt_tokens"], result["completion_tokens"]) == (6, *usage_direct)
        assert sorted(r[0] for r in lake.fetchall("SELECT status FROM llm_batches")) == ["completed", "submitted"]
        assert lake.fetchall("SELECT DISTINCT outcome, counted_by FROM llm_calls WHERE job_id = ?", [job_id]) == [("ok", "server")]
        meta = srv.batches["batch-1"]["metadata"]
        assert meta == {"vitpro_unit": units[0].id} and all(h is None or "Bearer" in h for h in srv.auth_headers)


def test_a_cancelled_job_cancels_its_batch_and_failed_lines_are_asked_directly(home, shared_data):
    from workers.jobs import generate as gen_job
    from workers.runtime import Cancelled

    _ingest_abo(shared_data)
    lake = open_store(load_settings().store)
    with FakeChatServer(batch_seconds=30) as srv:
        params = GenerateJob(backend="openai", openai=OpenAIChatBackend(base_url=srv.base_url, model="good"), tasks=["recognition"], batch=True,
                             batch_poll_s=0.05).params()
        engine, job_id, units = _planned_units(params)
        calls = []

        def check():  # `vitpro jobs cancel` seen at the unit's third look
            calls.append(1)
            if len(calls) >= 3:
                raise Cancelled(job_id)

        with pytest.raises(Cancelled):
            gen_job.run(_UnitCtx(engine, job_id, units[0], params, check))
        assert srv.cancels == ["batch-1"] and srv.batches["batch-1"]["status"] == "cancelling"
        assert sorted(r[0] for r in lake.fetchall("SELECT status FROM llm_batches")) == ["cancelled", "submitted"]
        assert lake.scalar("SELECT count(*) FROM samples") == 0 and srv.requests == 0

    with FakeChatServer(batch_seconds=0.1) as srv:  # the batch fails every line with a 500: each is asked directly
        params = GenerateJob(backend="openai", openai=OpenAIChatBackend(base_url=srv.base_url, model="batch-500"), tasks=["recognition"],
                             batch=True, batch_poll_s=0.05).params()
        job = _run_job("generate", params)
        assert job.status == "succeeded" and srv.batch_lines == 0 and srv.requests == 3 and job.counts["llm_requests"] == 3
        assert lake.scalar("SELECT count(DISTINCT item_id) FROM samples WHERE model_id LIKE '%batch-500%'") == 3


def test_batch_is_refused_without_an_openai_server():
    from config.fields import FieldError

    with pytest.raises(FieldError, match="Batch API is an OpenAI-compatible server's"):
        GenerateJob(backend="template", batch=True).params()
