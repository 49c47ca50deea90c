"""What a generation job has cost so far and what the rest will cost, as `vitpro jobs show` and the Jobs page
say it: its units' token counts (summed into the job's counts), the prices it was launched with, its time."""
from __future__ import annotations

from curation.generation.usage import CostReport, Prices, UsageTotals

from .timing import timing


def job_prices(params: dict) -> Prices | None:
    """The prices a generation job was launched with (None: none given, or parameters this version cannot read)."""
    from .generate import GenerateJob

    try:
        return GenerateJob.from_params(params).prices()
    except ValueError:  # parameters of another version, a price table since edited: the counts still stand
        return None


def cost_report(job) -> CostReport | None:
    """None for a job that is not a generation with an LLM (templates cost nothing, and count nothing)."""
    if job.kind != "generate" or (job.params or {}).get("backend") == "template":
        return None
    prices = job_prices(job.params)
    took = timing(job.status, job.started_at, job.finished_at, job.progress_done, job.progress_total or 0)
    return CostReport(UsageTotals.from_result(job.counts or {}), prices, took.elapsed_s, int(job.progress_done or 0),
                      int(job.progress_total or 0))
