"""Typed job specs as the one source of truth: for every kind, the command line's options, the Jobs page's
widgets and the handler's reading of a stored job give each field the spec's own default; a refusal names
its field; a recipe's plain values are read into the spec with every key checked."""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING

import click
import pytest

from config.fields import FieldError, base_type, build, described, info, to_plain
from jobs.registry import kinds, spec_for

from .test_ui_pages import page, ui_store  # noqa: F401  (ui_store: the module's store fixture)

# what a required field holds in a stored job (values only: nothing is resolved here)
REQUIRED = {"model": "/m", "pilot": "p", "snapshot": "s", "name": "n", "out": "/o", "source": "/s.csv", "backend": "template", "grid": {"ocr": ["on", "off"]}}


def _cli_options():
    """Every click option made from a spec field, across all commands: (spec, field) -> [options]."""
    from vitpro.cli import cli

    found: dict[tuple[type, str], list[click.Option]] = {}

    def walk(command):
        for param in command.params:
            if hasattr(param, "spec_field"):
                found.setdefault(param.spec_field, []).append(param)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(cli)
    return found


def _plain(value):
    return to_plain(value) if not isinstance(value, tuple) else list(value)


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_every_field_a_user_sets_says_what_it_is(kind):
    for field in described(spec_for(kind)):
        assert field.help and not field.help.isspace(), f"{kind}.{field.name} has no help"
        assert field.label and field.flag.startswith("--")


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_the_handler_reads_the_specs_defaults_from_a_stored_job(kind):
    """What a handler gets (ctx.spec) from a stored job that left a field out is the spec's default."""
    spec = spec_for(kind)
    fields = {f.name: f for f in dataclasses.fields(spec)}
    stored = {name: REQUIRED[name] for name, f in fields.items() if f.default is MISSING and f.default_factory is MISSING}
    job = spec.from_params(stored)
    for name, f in fields.items():
        if name in stored:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        assert _plain(getattr(job, name)) == _plain(default), f"{kind}.{name}"
    # and what is stored is read back as the same spec
    assert spec.from_params(to_plain(job)) == job


def test_the_command_lines_defaults_are_the_specs():
    options = _cli_options()
    covered = {spec.KIND for spec, _ in options if hasattr(spec, "KIND")}
    assert covered >= {"ocr", "clip_score", "generate", "grounding", "ingest", "export", "eval", "ablate"}, covered
    for (spec, name), opts in options.items():
        field = info(spec, name)
        for opt in opts:
            if field.default is MISSING:
                # required, or given another way (an environment variable; `vitpro generate report` needs no backend)
                assert opt.required or opt.envvar or opt.default in (None, getattr(click.core, "UNSET", None)), (spec.__name__, name)
                continue
            default = opt.default
            if isinstance(default, str) and base_type(field.type) is list:  # a comma-separated list
                default = [v for v in default.split(",") if v]
            if opt.multiple and default in ((), None) and field.default is None:
                continue
            want = _plain(field.default)
            assert _plain(default if not isinstance(default, tuple) else list(default)) == want, (spec.__name__, name, default, want)


def test_training_options_left_out_mean_the_presets_and_the_default_preset_is_the_specs():
    """`vitpro train run` sends only the options given over a preset (None: the preset's), so its defaults
    are those of --preset's default, which must be the spec's own TrainConfig."""
    from jobs.train import TrainJob
    from trainer.config import TrainConfig, preset
    from vitpro.cli import cli

    run = cli.commands["train"].commands["run"]
    by_name = {p.name: p for p in run.params}
    assert by_name["preset_name"].default == "paper" and preset("paper") == TrainConfig() == info(TrainJob, "config").default
    overridable = [p for p in run.params if p.name in {f.name for f in dataclasses.fields(TrainConfig)} | {"r", "alpha", "dropout", "resolution"}]
    assert len(overridable) >= 15 and all(p.default in (None, getattr(click.core, "UNSET", None)) for p in overridable)
    assert preset("paper").with_overrides(**{p.name: None for p in overridable if p.name != "resolution"}) == TrainConfig()


def test_a_refusal_on_the_command_line_names_the_flag(home, tmp_path):
    from click.testing import CliRunner

    from vitpro.cli import cli

    model = tmp_path / "m"
    model.mkdir()
    result = CliRunner().invoke(cli, ["score", "grounding", "--model", str(model), "--no-wait"])
    assert result.exit_code == 2 and "error: --model: " in result.output and "config.json" in result.output
    result = CliRunner().invoke(cli, ["snapshot", "export", "nope", "--format", "llava"])
    assert result.exit_code == 2


def test_a_refusal_names_its_field_in_a_nested_config_too(home):
    from jobs.grounding import GroundingJob

    with pytest.raises(FieldError) as caught:
        GroundingJob.from_fields({"model": "/m", "config": {"segment": "everything"}})
    assert caught.value.field == "config.segment" and "answer, question or text" in caught.value.message
    with pytest.raises(FieldError) as caught:
        GroundingJob.from_fields({"model": "/m", "batch_sise": 4})
    assert caught.value.field == "batch_sise" and "no such field of GroundingJob" in caught.value.message
    with pytest.raises(FieldError) as caught:
        GroundingJob(model="/m", batch_size=0).params()
    assert caught.value.field == "batch_size" and caught.value.message == "must be at least 1, not 0"
    with pytest.raises(FieldError) as caught:
        GroundingJob.from_fields({"model": "/m", "batch_size": "eight"})
    assert caught.value.field == "batch_size" and "whole number" in caught.value.message
    assert build(GroundingJob, {"model": "/m", "config": {"segment": "question"}, "on": "items"}).config.segment == "question"


def test_the_jobs_pages_widgets_hold_the_specs_defaults(ui_store):  # noqa: F811
    """Every widget a form makes from a spec field (its key: Spec.field) starts at the spec's default."""
    seen = 0
    for tab in ("Ingest", "OCR", "CLIPScore", "Generation", "VisAttnScore", "Export", "Training", "Evaluation"):
        at = page("jobs", launch_tab=tab)
        assert not at.exception
        for kind in ("ingest", "ocr", "clip_score", "generate", "grounding", "export", "train", "eval"):
            spec = spec_for(kind)
            for field in described(spec):
                for key in (f"{spec.__name__}.{field.name}", {"grounding.device": "vis_device", "eval.batch_size": "eval_batch_size",
                                                               "eval.objective_mode": "eval_objective_mode"}.get(f"{kind}.{field.name}")):
                    if key is None or key not in at.session_state:
                        continue
                    value = at.session_state[key]
                    if field.name in ("name",) or field.required:  # the page proposes a fresh run/evaluation name; a path to type
                        continue
                    if field.name == "config.model" and value != field.default:  # the models folder's CLIP checkpoint
                        assert value.endswith("/clip")
                        continue
                    want = field.default if field.default is not None else (None if field.choices or base_type(field.type) in (int, float, list) else "")
                    assert _plain(value) == _plain(want), (tab, kind, field.name, value, want)
                    seen += 1
    assert seen >= 20, seen
