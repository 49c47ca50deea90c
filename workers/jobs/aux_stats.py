"""Auxiliary stats for the paper's last filter (images with little OCR text): per image, the number of
characters and boxes OCR read. Pure SQL over stored rows; one unit."""
from __future__ import annotations

from typing import Any

from db.app.jobs import UnitSpec
from db.lake import batches

from ..runtime import UnitContext
from .registry import add_handler


def plan(ctx: UnitContext) -> tuple[list[UnitSpec], dict[str, Any]]:
    return [UnitSpec({}, 1)], {}


def run(ctx: UnitContext) -> dict[str, Any]:
    return {"rows_written": batches.write_ocr_stats(ctx.lake, ctx.run_id)}


def finalize(ctx: UnitContext) -> dict[str, Any]:
    return {}


add_handler("aux_stats", plan=plan, run=run, finalize=finalize)
