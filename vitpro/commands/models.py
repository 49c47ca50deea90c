"""`vitpro models`: the VLM families supported, and tiny checkpoints for tests and the demo."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .group import cli, echo_table, fail


# ---- models ------------------------------------------------------------------------------------------
@cli.group()
def models() -> None:
    """Build tiny demo checkpoints (no model hub is reachable here) and inspect model folders."""


def _tiny_families() -> list[str]:
    from curation.tiny_models import FAMILIES

    return list(FAMILIES)


@models.command("make-tiny")
@click.option("--family", type=click.Choice(_tiny_families()), required=True,
              help="A VLM family (VisAttnScore, training; see `vitpro models families`), clip (CLIPScore) or llama (a causal LM for generation).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def models_make_tiny(family, out, seed) -> None:
    """Build a deterministic tiny checkpoint from the family's own config classes, with a tokenizer trained
    here and the family's chat template, saved with the library's own save_pretrained. Its scores mean
    nothing: it exists to run every code path offline."""
    from curation.tiny_models import make_tiny

    path = make_tiny(family, out, seed=seed)
    click.echo(f"{family} tiny checkpoint in {path} ({sum(f.stat().st_size for f in path.iterdir()) / 1e6:.1f} MB); demo model: scores mean nothing")


@models.command("push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("url")
def models_push(folder, url) -> None:
    """Upload a model folder to s3://BUCKET/PREFIX, so that workers with no shared disk can load it: pass
    the URL as --model (or CLIP's --model) and each worker copies it once into its own cache. Credentials
    and endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL."""
    from db.storage.model_files import upload_model
    from db.storage.objects import ObjectStoreError

    try:
        n = upload_model(folder, url)
    except (ObjectStoreError, ValueError) as exc:
        fail(str(exc))
    click.echo(f"{n} file(s) of {folder} uploaded to {url.rstrip('/')}/; use --model {url.rstrip('/')}")


@models.command("families")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_families(as_json) -> None:
    """The VLM families VisAttnScore, training and evaluation run on, with the config.json model types each
    serves, a real checkpoint of it, its image limit and LLaMA-Factory's template for it."""
    from curation.tiny_models import vlm_families
    from curation.vlm import FAMILIES

    tiny = set(vlm_families())
    rows = [{"family": name, "title": cls.title, "model_types": list(cls.model_types), "example": cls.hub_example,
             "max_images": cls.max_images, "llamafactory_template": cls.llamafactory_template, "parts": sorted(cls.parts), "tiny": name in tiny}
            for name, cls in sorted(FAMILIES.items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    echo_table([(r["family"], r["title"], ", ".join(r["model_types"]), r["example"], r["max_images"] or "any",
                  r["llamafactory_template"] or "-", "yes" if r["tiny"] else "no") for r in rows],
                ("family", "name", "model types", "a real checkpoint", "images", "LLaMA-Factory", "make-tiny"))
    click.echo("point any command at a checkpoint folder of these (`--model DIR`); its config.json says the family")
