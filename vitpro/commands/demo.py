"""`vitpro demo`: demo data through every stage on real workers, then the web app."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .group import cli


# ---- demo --------------------------------------------------------------------------------------------
@cli.command()
@click.option("--no-ui", is_flag=True, help="Run the pipeline and print the summary; do not serve the web app after it.")
@click.option("--data-only", is_flag=True, help="Only make the demo data and the tiny models; then `vitpro run examples/demo.yaml` runs the pipeline.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the demo data (default: $VITPRO_HOME/demo-data).")
@click.option("--products", type=click.IntRange(4, 2000), default=24, show_default=True, help="Synthetic products (one catalog row and photo each).")
@click.option("--complaints", type=click.IntRange(2, 2000), default=16, show_default=True, help="Customer complaint transcripts (with damaged-product photos).")
@click.option("--workers", "n_workers", type=click.IntRange(1, 8), default=2, show_default=True, help="Worker processes to start.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="Port of the web app.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address the web app listens on (0.0.0.0: every interface).")
def demo(no_ui, data_only, out, products, complaints, n_workers, seed, port, address) -> None:
    """Build demo data, run every stage end to end through real workers (embedded defaults), then serve the
    web app on the result (Ctrl+C stops it; --no-ui stops after the pipeline).

    The stages are the recipe examples/demo.yaml: `vitpro demo --data-only` then `vitpro run examples/demo.yaml`
    runs the same pipeline without the summary and the web app."""
    from ..demo import run_demo

    sys.exit(run_demo(out=out, products=products, complaints=complaints, n_workers=n_workers, seed=seed, ui=not no_ui, port=port, address=address,
                      data_only=data_only))
