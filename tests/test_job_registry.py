"""The job registries: every kind has a spec (jobs/) and a handler (workers/jobs/), each spec is a frozen
dataclass in the module of its kind's name, and importing the sending side builds no Celery app."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.registry import SPECS, choices, kinds, queue_of, spec_for
from workers.jobs.registry import load_handlers

REPO = Path(__file__).resolve().parent.parent


def test_every_spec_has_a_handler_and_every_handler_a_spec():
    handlers = load_handlers()
    assert kinds() == sorted(handlers) and len(kinds()) == 14
    for kind, handler in handlers.items():
        assert handler.kind == kind and all(callable(f) for f in (handler.plan, handler.run, handler.finalize))


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_a_spec_is_a_frozen_dataclass_in_the_module_of_its_kind(kind):
    spec = spec_for(kind)
    assert dataclasses.is_dataclass(spec) and spec.__dataclass_params__.frozen
    assert spec.__module__ == f"jobs.{kind}" and spec.KIND == kind and spec.QUEUE in ("cpu", "gpu", "train")
    # choices live on the fields themselves (config.fields.param), where the CLI, the forms and the docs read them
    assert all(spec.choices_of(f.name) for f in dataclasses.fields(spec) if f.metadata.get("choices"))


def test_queues_come_from_the_spec_or_its_rule():
    assert queue_of("ocr", {"device": "cuda"}) == "gpu" and queue_of("ocr", {"device": "cpu"}) == "cpu" and queue_of("ocr", {}) == "cpu"
    assert queue_of("generate", {"backend": "hf"}) == "gpu" and queue_of("generate", {"backend": "template"}) == "cpu"
    assert [queue_of(k, {}) for k in ("ingest", "clip_score", "grounding", "export", "train", "eval", "ablate")] == \
        ["cpu", "gpu", "gpu", "cpu", "train", "train", "train"]
    assert choices("eval", "benchmarks") == ("objective", "generative", "attributes")
    with pytest.raises(ValueError, match="unknown job kind 'nope'; job kinds are: ") as caught:
        spec_for("nope")
    assert all(kind in str(caught.value) for kind in kinds())


def test_a_kind_cannot_be_registered_twice():
    from jobs.registry import JobSpec, job_kind

    with pytest.raises(ValueError, match="registered twice"):
        job_kind("ocr")(type("OtherOcr", (JobSpec,), {}))
    assert SPECS["ocr"].__name__ == "OcrJob"


def test_the_sending_side_imports_no_celery_no_worker_and_no_model_library():
    code = ("import sys; from jobs.registry import kinds; kinds(); import jobs.submit, jobs.broker, ui.job_forms;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu', 'workers', 'torch', 'transformers', 'open_clip'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
