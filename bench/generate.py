"""Generation against an LLM server: concurrency, the Batch API, the cost estimate and the response cache.

    python bench/generate.py

A local server speaking the OpenAI chat-completions and Batch APIs (tests/fake_llm.py) answers every request
after 50 ms (the stand-in for an LLM server, which these machines cannot run; its batches wait 0.5 s in a
queue, then take 50 ms per request, 16 at a time). Four measures, each printed with its target:

1. the same 200 items (one task each) through the real client, prompt rendering, parsing and validation,
   with one request in flight and with 16: items/s and the ratio (target >= 8x);
2. the same requests through the Batch API (upload, create, poll, download, map back by custom_id) against
   direct requests: wall time of both, and whether every answer is identical (target: identical);
3. the estimate's prompt tokens (counted before any request, with a tiny checkpoint's tokenizer) against
   the tokens the server counted after the run (target: within 2%), and the characters / 4 guess's error;
4. a generation job run twice on a store of the real ABO listings (its outputs removed in between, as after
   a crash): the second run's requests answered from the response cache (target: 100%).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from curation.generation import ItemContext, OpenAIChatBackend, PromptTemplate, build_requests, process_responses
    from tests.fake_llm import FakeChatServer

    contexts = [
        ItemContext(item_id=f"item-{k}", kind="catalog", title=f"Aurelia Argan Oil Shampoo {k} ml", description="A shampoo in a blue bottle.",
                    brand="Aurelia", category="Hair Care", attributes={"Color": "Blue"}, feedback_text=None, issue_type=None, image_ids=[f"img-{k}"])
        for k in range(args.items)
    ]
    template = PromptTemplate.load()
    requests = build_requests(contexts, ["recognition"], template)
    results = {}
    with FakeChatServer(latency=args.latency) as srv:
        for concurrency in (1, args.concurrency):
            backend = OpenAIChatBackend(base_url=srv.base_url, model="good", concurrency=concurrency)
            start = time.perf_counter()
            responses = backend.complete(requests)
            outcome = process_responses(requests, responses, backend="openai", model_id=backend.model_id, prompt_version=template.version)
            elapsed = time.perf_counter() - start
            assert len(outcome.samples) == 2 * args.items and not outcome.rejects, (len(outcome.samples), outcome.rejects[:3])
            results[concurrency] = elapsed
            print(f"{concurrency:>3} request(s) in flight: {elapsed:6.2f} s  {args.items / elapsed:7.1f} items/s  (max in flight seen: {srv.max_in_flight})")
    print(f"ratio {args.concurrency} concurrent vs sequential: {results[1] / results[args.concurrency]:.1f}x (target >= 8x); server latency {args.latency * 1000:.0f} ms")
    batch_against_direct(requests, args)
    estimate_against_counted(requests)
    cache_on_rerun()


def batch_against_direct(requests, args) -> None:
    from curation.generation import OpenAIChatBackend
    from curation.generation.batch_api import BatchClient, wait
    from tests.fake_llm import FakeChatServer

    with FakeChatServer(latency=args.latency, batch_seconds=0.5) as srv:
        backend = OpenAIChatBackend(base_url=srv.base_url, model="good", concurrency=args.concurrency)
        start = time.perf_counter()
        direct = backend.complete(requests)
        direct_s = time.perf_counter() - start
        client = BatchClient(backend)
        start = time.perf_counter()
        batch_id, _ = client.submit(requests)
        state = wait(client, batch_id, poll_s=0.1)
        got = client.results(state, time.perf_counter() - start)
        batch_s = time.perf_counter() - start
    same = all(got[backend.fingerprint(r)].text == d.text for r, d in zip(requests, direct))
    print(f"batch API: {len(requests)} requests in {batch_s:.2f} s (0.5 s of it the server's queue) against {direct_s:.2f} s direct with "
          f"{args.concurrency} in flight; answers identical: {'yes' if same else 'NO'} (target: identical) -> {'PASS' if same else 'FAIL'}")


def estimate_against_counted(requests) -> None:
    import tempfile

    from curation.generation import OpenAIChatBackend
    from curation.generation.usage import TokenCounter
    from curation.tiny_models import make_tiny
    from tests.fake_llm import FakeChatServer

    with tempfile.TemporaryDirectory() as tmp:
        tok = str(make_tiny("llama", Path(tmp) / "llama"))
        counter, guess = TokenCounter(tok), TokenCounter()
        backend = OpenAIChatBackend(base_url="http://127.0.0.1:9/v1", model="good")
        estimated = sum(counter.prompt(backend.body(r)["messages"]) for r in requests)
        guessed = sum(guess.prompt(backend.body(r)["messages"]) for r in requests)
        with FakeChatServer(tokenizer=tok) as srv:
            OpenAIChatBackend(base_url=srv.base_url, model="good", concurrency=16).complete(requests)
            counted = sum(p for p, _ in srv.usage_sent)
    off = abs(estimated - counted) / counted
    print(f"estimate: {estimated:,} prompt tokens before the run, {counted:,} counted by the server after it: {100 * off:.2f}% apart "
          f"(target <= 2%) -> {'PASS' if off <= 0.02 else 'FAIL'}; characters / 4 would have said {guessed:,} ({100 * (guessed - counted) / counted:+.1f}%)")


def cache_on_rerun() -> None:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VITPRO_HOME"] = str(Path(tmp) / "var")
        from config.settings import load_settings
        from curation.generation import OpenAIChatBackend
        from db.app import jobs
        from db.app.engine import write_engine
        from db.store import init_store, open_store
        from jobs.generate import GenerateJob
        from jobs.ingest import IngestJob
        from tests.fake_llm import FakeChatServer
        from workers.runtime import execute_unit

        settings = load_settings()
        init_store(settings.store)
        engine = write_engine(settings.app_url)

        def run(kind, params):
            job_id, queue = jobs.create_job(engine, kind=kind, queue="cpu", params=params, launched_by="bench")
            todo = list(queue)
            while todo:
                uid, _ = todo.pop(0)
                sent: list = []
                execute_unit(uid, send=sent.extend)
                todo.extend(sent)
            return jobs.get_job(engine, job_id)

        listings = REPO.parent / "shared" / "data" / "abo-samples" / "listings.jsonl"
        run("ingest", IngestJob(source=str(listings), format=None, mapping=None, name=None, image_root=None, redact=True).params())
        lake = open_store(settings.store)
        with FakeChatServer() as srv:
            params = GenerateJob(backend="openai", openai=OpenAIChatBackend(base_url=srv.base_url, model="good")).params()
            first = run("generate", params)
            lake.transaction(lambda con: [con.execute(f"DELETE FROM {t}") for t in ("samples", "generation_requests", "generation_rejects")])
            second = run("generate", params)
        hits, asked = second.counts.get("cache_hits", 0), second.counts.get("cache_hits", 0) + second.counts.get("llm_requests", 0)
        share = hits / asked if asked else 0.0
        print(f"cache: first run {first.counts.get('llm_requests', 0)} request(s) sent; the rerun {hits} of {asked} answered from the cache "
              f"({100 * share:.0f}%, {srv.requests - first.counts.get('llm_requests', 0)} sent) (target 100%) -> {'PASS' if share == 1.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
