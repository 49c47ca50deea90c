"""The VisAttnScore job's spec (gpu queue): the VLM, its device and precision, what is scored (generated
samples or items) and how."""
from __future__ import annotations

from dataclasses import dataclass, replace

from config.fields import about, check, param
from curation.vis_attn import VisAttnConfig
from db.storage.locations import Location

from .registry import JobSpec, job_kind

DTYPES = ("float32", "bfloat16", "float16")
# attention: VisAttnScore (the paper's); gain: visual information gain, from the same forward's logits and
# one text-only forward (curation/visual_gain.py); judge: the VLM's yes/no on "does the image show what the
# answer says?", from the same forward's last position (curation/judge.py)
SIGNALS = ("attention", "gain", "judge")


@job_kind("grounding")
@dataclass(frozen=True)
class GroundingJob(JobSpec):
    QUEUE = "gpu"

    model: str = param(help="A VLM checkpoint folder (or s3:// prefix) of any family in `vitpro models families`.", label="VLM")
    device: str = param("cpu", help="cpu, cuda or cuda:N.")
    dtype: str = param("float32", choices=DTYPES, help="The precision the VLM runs in.")
    batch_size: int = param(8, min=1, help="Samples in one forward pass.")
    items_per_unit: int = param(64, min=1, help="Samples (or items) in one work unit: a retry's and a cancel's granularity.")
    config: VisAttnConfig = param(factory=VisAttnConfig, help="How the score is computed.")
    # The paper scores with the image's OCR text in the prompt ("OCR Tokens: ..."), as training sees it.
    ocr: bool = param(True, flag="--with-ocr/--without-ocr", label="OCR text in the prompt",
                      help="Put each image's OCR text in the prompt (the paper's setting); scores with and without are separate series.")
    signals: list[str] = param(factory=lambda: list(SIGNALS), choices=SIGNALS, label="Signals",
                               help="What to compute in the one pass: attention (VisAttnScore; always, it is the pass itself), "
                                    "gain (visual information gain: log p with the image minus without, per token) and judge "
                                    "(the VLM's probability of 'yes' to: does the image show what the answer says?).")
    blind_ocr: bool = param(True, flag="--blind-ocr/--blind-no-ocr", label="OCR text kept without the image",
                            help="The pass without the image keeps the OCR text, so words the photo's print alone tells do not count as seen.")
    on: str = param("samples", choices=("samples", "items"), label="Score",
                    help="Score generated samples, or items with their own text (a title, what the customer wrote).")
    selection: str | None = param(None, help="Only the samples of this named selection (vitpro sample --name).")
    model_id: str = param("", derived=True, help="The scores' model id: the model's location, with '#ocr' when OCR text is in the prompt.")
    demo_model: bool = param(False, derived=True, help="A tiny checkpoint of `vitpro models make-tiny` (random weights): its scores are flagged.")

    def resolve(self) -> "GroundingJob":
        from curation.tiny_models import is_tiny
        from curation.vlm import check_model_folder

        check(self)
        try:
            check_model_folder(self.model)  # a family we have an adapter for (else: the supported ones, listed)
        except ValueError as exc:
            raise about("model", exc) from None
        if "attention" not in self.signals:  # the with-image pass is VisAttnScore's forward: it is always there
            raise about("signals", "attention is always computed (the with-image pass is its forward); add the others to it, e.g. attention,gain,judge")
        model = str(Location.of(self.model).absolute())
        # the scores are those of this model *and* prompt: OCR text in the prompt makes them others
        return replace(self, model=model, model_id=model + ("#ocr" if self.ocr else ""), demo_model=is_tiny(model))
