"""`vitpro generate` (question/answer samples, as a job, or a dry run of the prompts) and `vitpro sample` (a balanced selection)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from config.settings import load_settings
from jobs.generate import GenerateJob

from ..spec_options import job_params, spec_option
from .group import cli, demo_banner, echo_table, fail, run_job


# ---- generation ----------------------------------------------------------------------------------------
@cli.group(invoke_without_command=True)
@spec_option(GenerateJob, "backend", required=False)
@spec_option(GenerateJob, "tasks", comma=True, help="Comma-separated tasks.")
@click.option("--model", help="openai: the served model's name; hf: a local model folder.")
@spec_option(GenerateJob, "openai.base_url", envvar="VITPRO_LLM_BASE_URL", required=False,
             help="openai: the server's base URL, e.g. http://localhost:8000/v1 (env VITPRO_LLM_BASE_URL).")
@spec_option(GenerateJob, "openai.api_key_env", help="openai: the environment variable holding the API key (never logged).")
@spec_option(GenerateJob, "openai.concurrency", type=click.IntRange(1, 256), help="openai: requests in flight at once, per worker process.")
@spec_option(GenerateJob, "openai.rate_limit", type=click.FloatRange(0.01), help="openai: at most this many requests per second, per worker process.")
@spec_option(GenerateJob, "openai.timeout_s", "--timeout", type=click.FloatRange(1), help="openai: seconds per request.")
@spec_option(GenerateJob, "openai.max_retries", type=click.IntRange(0, 20), help="openai: retries of a request that failed for a reason that may pass.")
@click.option("--max-tokens", type=click.IntRange(16), help="Tokens an answer may take [openai 768, hf 256].")
@spec_option(GenerateJob, "openai.structured", "--structured", help="openai: ask for the pairs as JSON of the task's schema (response_format "
                                                                       "json_schema; OpenAI and vLLM's structured outputs), attribute keys included.")
@spec_option(GenerateJob, "openai.tokenizer", "--tokenizer", type=click.Path(exists=True, file_okay=False),
             help="openai: the model's tokenizer folder: counts tokens where the server sends no usage, and for --estimate.")
@spec_option(GenerateJob, "batch", "--batch")
@spec_option(GenerateJob, "batch_poll_s", "--batch-poll")
@spec_option(GenerateJob, "cache")
@spec_option(GenerateJob, "price_in")
@spec_option(GenerateJob, "price_out")
@spec_option(GenerateJob, "price")
@spec_option(GenerateJob, "currency")
@click.option("--estimate", is_flag=True, help="Count the requests and prompt tokens of the whole job and print the expected cost range, "
                                               "without calling the server and without a job.")
@spec_option(GenerateJob, "hf.device", help="hf: cpu or cuda.")
@spec_option(GenerateJob, "hf.dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="hf: the precision the model runs in.")
@spec_option(GenerateJob, "n_pairs")
@spec_option(GenerateJob, "template_path", "--template", type=click.Path(exists=True, dir_okay=False))
@spec_option(GenerateJob, "examples_path", "--examples", type=click.Path(exists=True, dir_okay=False))
@spec_option(GenerateJob, "kinds", "--kind", "kinds")
@spec_option(GenerateJob, "limit")
@spec_option(GenerateJob, "items_per_unit")
@click.option("--dry-run", type=click.IntRange(1), metavar="N", help="Print the rendered prompts for N items (and the template backend's pairs) without a job.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--local", is_flag=True, help="Start a worker for this command if none serves the queue.")
@click.pass_context
def generate(ctx, backend, tasks, model, base_url, api_key_env, concurrency, rate_limit, timeout_s, max_retries, max_tokens, structured, tokenizer, batch,
             batch_poll_s, cache,
             price_in, price_out, price, currency, estimate, device, dtype, n_pairs, template_path, examples_path, kinds, limit, items_per_unit, dry_run,
             wait, local) -> None:
    """Generate question/answer samples for the paper's tasks from every item not yet done.

    \b
    Examples:
      vitpro generate --backend template
      vitpro generate --backend openai --base-url http://localhost:8000/v1 --model mistral-7b-instruct --concurrency 16
      vitpro generate --backend hf --model models/llama --device cuda --tasks recognition,refusal
      vitpro generate --backend openai --base-url ... --model ... --dry-run 2
      vitpro generate --backend openai --base-url ... --model ... --tokenizer models/llm --price-in 0.15 --price-out 0.6 --estimate
      vitpro generate --backend openai --base-url ... --model ... --structured --price my-vllm-8b
      vitpro generate --backend openai --base-url ... --model ... --batch --price hosted-large@batch
      vitpro generate report            (how varied the answers are, per task, and what the LLM jobs cost)
    """
    if ctx.invoked_subcommand is not None:
        return
    if backend is None:
        fail("choose a backend: --backend template|openai|hf (or `vitpro generate report` for the quality report)")
    from curation.generation import HFLocalBackend, OpenAIChatBackend

    openai = hf = None
    if backend == "openai":
        if not (base_url and model):
            fail("the openai backend needs --base-url and --model")
        try:
            openai = OpenAIChatBackend(base_url=base_url, model=model, api_key_env=api_key_env, concurrency=concurrency, timeout_s=timeout_s, max_retries=max_retries,
                                       rate_limit=rate_limit, structured=structured, tokenizer=str(Path(tokenizer).resolve()) if tokenizer else None,
                                       **({"max_tokens": max_tokens} if max_tokens else {}))
        except ValueError as exc:
            fail(str(exc))
    elif backend == "hf":
        if not model or not Path(model).is_dir():
            fail("the hf backend needs --model, a local causal LM folder (vitpro models make-tiny --family llama builds a demo one)")
        hf = HFLocalBackend(model_dir=str(Path(model).resolve()), device=device, dtype=dtype, **({"max_new_tokens": max_tokens} if max_tokens else {}))
        demo_banner(model)
    if price and (price_in is not None or price_out is not None):
        fail("--price names a price from your table; give it or --price-in/--price-out, not both")
    if structured and backend != "openai":
        fail("--structured is for the openai backend (a server's structured outputs)")
    params = job_params(GenerateJob, backend=backend, tasks=tasks, openai=openai, hf=hf, n_pairs=n_pairs, items_per_unit=items_per_unit,
                        template_path=template_path, examples_path=examples_path, kinds=list(kinds) or None, limit=limit, cache=cache, batch=batch,
                        batch_poll_s=batch_poll_s,
                        price_in=price_in, price_out=price_out, price=price, currency=currency)
    if estimate:
        _estimate(params)
        return
    if dry_run:
        _generate_dry_run(params, dry_run)
        return
    run_job("generate", params, wait=wait, local=local)


def _generate_dry_run(params: dict, n: int) -> None:
    from curation.generation import PromptTemplate, build_requests
    from curation.item_contexts import contexts_for
    from db.reads import generation_reads
    from db.store import open_store

    lake = open_store(load_settings().store)
    items = generation_reads.items_to_generate(lake, params["tasks"], params["backend"], params["model_id"], params["prompt_version"], params.get("kinds"))[:n]
    if not items:
        click.echo("no items to generate for (ingest first, or everything is done for this backend and prompt)")
        return
    template = PromptTemplate.load(params.get("template_path"), params.get("examples_path"))
    requests = build_requests(contexts_for(lake, items), params["tasks"], template, params["n_pairs"])
    # the version the samples will carry (for the template backend, its templates' version, not the prompt file's)
    click.echo(f"prompt version {params['prompt_version']}; {len(requests)} request(s) for {len(items)} item(s)")
    for request in requests:
        click.secho(f"\n=== item {request.key[0]}  task {request.key[1]} ===", bold=True)
        if params["backend"] == "template":
            from curation.generation.templates import template_pairs

            made = template_pairs(request.context, request.task)
            if not made:
                click.echo("(no pair: nothing in the item's fields supports one)")
            for pair in made:
                click.echo(f"Q: {pair.question}\nA: {pair.answer}\n   evidence: " + "; ".join(f"{e['field']}: {e['text'][:60]!r}" for e in pair.evidence))
        else:
            for message in request.messages:
                click.echo(f"[{message['role']}]\n{message['content']}")


def _estimate(params: dict) -> None:
    """What the job would ask and cost (jobs/generate_estimate.py), printed; nothing is sent to the server."""
    from curation.generation.usage import PAIR_TOKENS
    from db.store import open_store
    from jobs.generate_estimate import EstimateError, estimate_job

    spec = GenerateJob.from_params(params)
    lake = open_store(load_settings().store)
    with click.progressbar(length=1, label="rendering the prompts", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = max(1, total)
            bar.update(done - bar.pos)

        try:
            result = estimate_job(spec, lake, progress=progress)
        except EstimateError as exc:
            fail(str(exc))
    click.echo(f"estimate for {result.items:,} item(s), tasks {', '.join(spec.tasks)}; nothing was sent to the server")
    for line in result.estimate.lines():
        click.echo(f"  {line}")
    click.echo("  (completion lengths: " + ("this model's earlier answers, 10th to 90th percentile" if result.from_history
                                            else f"{PAIR_TOKENS[0]}-{PAIR_TOKENS[1]} tokens per pair asked, no earlier answers of this model") + ")")


@generate.command("report")
@click.option("--backend", "only_backend", type=click.Choice(["openai", "hf", "template"]), help="Only samples of this backend.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def generate_report(only_backend, as_json) -> None:
    """Per task: the share of distinct answers, of "Unanswerable", the most repeated answers, and fact
    coverage (the share of each item's own attribute values that appear in some answer of that item).

    Exits with status 1 when a task breaks the repetition rule (one answer other than yes/no for more
    than 2% of the task's samples)."""
    from curation.generation.report import build_report, report_lines
    from db.reads import quality
    from db.store import open_store

    lake = open_store(load_settings().store)
    report = build_report(quality.task_rows(lake, only_backend), quality.coverage_rows(lake, only_backend))
    spent = _llm_usage(lake) if only_backend in (None, "openai", "hf") else []
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "llm_jobs": spent}, indent=2, ensure_ascii=False, default=str))
    else:
        for line in report_lines(report):
            click.echo(line)
        if spent:
            click.echo("\nLLM usage, newest job first (cost at the prices each job was launched with):")
            echo_table([(u["job_id"], u["model_id"][-40:], u["requests"], u["cached"], u["failed"], f"{u['prompt_tokens']:,}",
                         f"{u['completion_tokens']:,}", "-" if u["cost"] is None else f"{u['cost']:,.4f} {u['currency']}") for u in spent],
                       ("job", "model", "requests", "cached", "failed", "tokens in", "tokens out", "cost"))
    if not report.within_rule:
        sys.exit(1)


def _llm_usage(lake, limit: int = 20) -> list[dict]:
    """Per LLM generation job in the store (db/reads/generation_reads.usage_by_job), with its cost at its prices."""
    from db.app import jobs as jobs_db
    from db.reads import generation_reads
    from jobs.cost import job_prices

    from .group import open_engine

    rows = generation_reads.usage_by_job(lake)[:limit]
    engine = open_engine()
    for row in rows:
        job = jobs_db.get_job(engine, row["job_id"]) if row["job_id"] else None
        prices = job_prices(job.params) if job is not None else None
        row["cost"] = prices.cost(row["prompt_tokens"], row["completion_tokens"]) if prices else None
        row["currency"] = prices.currency if prices else None
    return rows


@cli.command()
@click.option("--by", required=True, help="Comma-separated strata: category, brand, region, issue_type, time, cluster (`vitpro clusters` first).")
@click.option("--per-stratum", type=click.IntRange(1), required=True, help="At most this many per stratum.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--of", "of", type=click.Choice(["samples", "items"]), default="samples", show_default=True)
@click.option("--time-bucket", type=click.Choice(["month", "quarter", "year"]), default="month", show_default=True)
@click.option("--task", "tasks", multiple=True, help="Only samples of this task (repeat).")
@click.option("--name", default="balanced", show_default=True, help="Name of the selection written (replaced if it exists).")
@click.option("--dry-run", is_flag=True, help="Print the balance table, write nothing.")
def sample(by, per_stratum, seed, of, time_bucket, tasks, name, dry_run) -> None:
    """Stratified sampling: at most N per stratum, deterministic for a seed; prints before/after balance."""
    from db.lake import sampling
    from db.store import open_store

    lake = open_store(load_settings().store)
    strata = [b.strip() for b in by.split(",") if b.strip()]
    try:
        sql, params, names = sampling.stratified(lake, by=strata, per_stratum=per_stratum, seed=seed, of=of, time_bucket=time_bucket, tasks=list(tasks) or None)
    except ValueError as exc:
        fail(str(exc))
    rows = sampling.balance(lake, sql, params, names)
    if not rows:
        fail(f"no {of} to sample" + (" (generate some first: vitpro generate)" if of == "samples" else ""))
    shown = rows[:40]
    echo_table([(*r[:-2], r[-2], r[-1]) for r in shown], (*names, "before", "after"))
    if len(rows) > len(shown):
        click.echo(f"... {len(rows) - len(shown)} more strata")
    before, after = sum(r[-2] for r in rows), sum(r[-1] for r in rows)
    click.echo(f"{len(rows)} strata: {before} {of} before, {after} after (at most {per_stratum} each, seed {seed})")
    if dry_run:
        return
    import uuid

    written = sampling.write_selection(lake, name, sql, params, names, seed, of, f"sample-{uuid.uuid4().hex[:8]}")
    click.echo(f"selection {name!r}: {written} {of}")
