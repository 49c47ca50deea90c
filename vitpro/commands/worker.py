"""`vitpro worker`: a Celery worker in the foreground (the one command that imports the workers)."""
from __future__ import annotations

import click

from config.settings import load_settings

from .group import cli, fail


# ---- worker ------------------------------------------------------------------------------------------
@cli.command()
@click.option("--queues", "-Q", default="cpu,gpu,train", show_default=True, help="Comma-separated queues: cpu, gpu, train.")
@click.option("--concurrency", "-c", type=click.IntRange(1), default=None, help="Worker processes (default: CPU count for cpu, 1 when gpu/train are served).")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(queues, concurrency, pool, loglevel) -> None:
    """Run a Celery worker (foreground). Start as many as you like, on any machine that sees the store."""
    import os

    from jobs.broker import QUEUES
    from vitpro.local_workers import pool_processes, with_openmp_threads, worker_command
    from workers.app import app

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        fail(f"unknown queue(s) {', '.join(unknown)}; queues are {', '.join(QUEUES)}")
    if concurrency is None:
        concurrency = 1 if ({"gpu", "train"} & set(names)) else (os.cpu_count() or 1)
    # the pool's processes inherit it; torch reads it when it starts in them
    os.environ.update(with_openmp_threads(dict(os.environ), pool_processes(concurrency, pool)))
    s = load_settings()
    click.echo(f"worker on {','.join(names)} x{concurrency} ({pool}), {os.environ['OMP_NUM_THREADS']} OpenMP and DuckDB thread(s) per process; "
               f"broker {s.describe()['broker']}")
    argv = worker_command(",".join(names), concurrency, pool, loglevel)
    app.worker_main(argv[argv.index("worker"):])
