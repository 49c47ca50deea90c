"""The documentation site: it builds strictly (no broken link, anchor or nav entry), and the references that
docs/hooks/reference.py generates at build time say what the code has: every `vitpro` command with its
options, every job kind with its spec's fields."""
from __future__ import annotations

import dataclasses
import html
import os
import re
import subprocess
import sys

import click
import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _page(site, uri: str) -> str:
    return (site / uri / "index.html").read_text(encoding="utf-8")


def _section(page: str, anchor: str, level: str) -> str:
    """The HTML from the heading with id ``anchor`` to the next heading of the same level."""
    start = page.index(f'id="{anchor}"')
    end = page.find(f"<{level}", start)
    return page[start:end if end != -1 else len(page)]


def _visible(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    return [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx) if not group.get_command(ctx, name).hidden]


def test_the_site_has_every_page_of_the_nav(site):
    for uri in ("tutorial/demo", "concepts/vis-attn-score", "concepts/filters", "how-to/gpu-cluster", "reference/cli",
                "reference/job-specs", "reference/configuration", "architecture", "benchmarks", "contributing", "changelog"):
        assert (site / uri / "index.html").is_file(), uri
    # the hook's module is not published with the pages, and no generated page is committed
    assert not list(site.rglob("*.py"))
    assert not (REPO / "docs" / "reference" / "cli.md").exists() and not (REPO / "docs" / "reference" / "job-specs.md").exists()


def test_the_cli_reference_names_every_command_with_its_usage_and_options(site):
    from vitpro.cli import cli

    page = _page(site, "reference/cli")
    root = click.Context(cli, info_name="vitpro")
    commands = _visible(cli, root)
    assert len(commands) >= 15
    for name, cmd in commands:
        anchor = "vitpro-" + re.sub(r"[^a-z0-9]+", "-", name.lower())
        assert f'id="{anchor}"' in page, f"no section for `vitpro {name}`"
        section = _section(page, anchor, "h2")
        ctx = click.Context(cmd, info_name=name, parent=root)
        usage = " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])
        assert html.escape(usage, quote=False) in section, f"usage of `vitpro {name}`"
        for param in cmd.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden and "--help" not in param.opts:
                assert f"<code>{html.escape(param.opts[0])}</code>" in section, f"`vitpro {name}` lacks {param.opts[0]}"
        if isinstance(cmd, click.Group):
            for sub, _ in _visible(cmd, ctx):
                assert f'id="{anchor}-{re.sub(r"[^a-z0-9]+", "-", sub.lower())}"' in section, f"`vitpro {name} {sub}`"
    # an option's type, default and help, as click has them
    worker = _section(page, "vitpro-worker", "h2")
    assert "<code>--queues</code>" in worker and "<code>cpu,gpu,train</code>" in worker and "Comma-separated queues" in worker
    assert "one of <code>prefork</code>, <code>solo</code>, <code>threads</code>" in worker


def test_the_spec_reference_names_every_job_kind_with_its_fields(site):
    from jobs import registry

    page = _page(site, "reference/job-specs")
    kinds = registry.kinds()
    assert {"ingest", "ocr", "generate", "grounding", "clip_score", "export", "train", "eval"} <= set(kinds)
    for kind in kinds:
        spec = registry.spec_for(kind)
        anchor = "kind-" + kind.replace("_", "-")
        assert f'id="{anchor}"' in page, f"no section for the job kind {kind!r}"
        section = _section(page, anchor, "h2")
        assert f"<code>{spec.__module__}.{spec.__name__}</code>" in section and f"<code>{spec.QUEUE}</code>" in section
        for field in dataclasses.fields(spec):
            assert f"<code>{field.name}</code>" in section, f"{kind}: field {field.name} missing"
            choices = field.metadata.get("choices") or (getattr(spec, "CHOICES", None) or {}).get(field.name)
            for choice in choices or ():
                assert f"<code>{html.escape(str(choice))}</code>" in section, f"{kind}.{field.name}: choice {choice!r} missing"
            words = re.match(r"[A-Za-z0-9 ,.()]{12,}", field.metadata.get("help") or "")
            if words:
                assert " ".join(words.group(0).split()) in section, f"{kind}.{field.name}: its help is not shown"


def test_the_configuration_page_names_every_setting(site):
    settings = (REPO / "config" / "settings.py").read_text(encoding="utf-8")
    page = _page(site, "reference/configuration")
    for name in sorted(set(re.findall(r'"(VITPRO_[A-Z0-9_]+)"', settings))):
        assert f"<code>{name}</code>" in page, f"{name} (config/settings.py) is not in docs/reference/configuration.md"


def test_the_readme_is_short_and_its_links_lead_somewhere():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert "make demo" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 15
    for link in local:
        assert (REPO / link).is_file(), f"README links to {link}, which does not exist"
