"""Generation throughput: 16 concurrent chat-completions requests against sequential ones.

    python bench/generate.py

A local server speaking the OpenAI chat-completions protocol answers every request after 50 ms (the
stand-in for an LLM server, which these machines cannot run). The same 200 items (one task each) go
through the real client, prompt rendering, parsing and validation, once with one request in flight and
once with 16. Prints items/s for both and the ratio (target >= 8x).
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


if __name__ == "__main__":
    main()
