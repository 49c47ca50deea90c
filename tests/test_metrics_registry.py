"""The stats are declared once (db/lake/metrics.py): filters and pages read a stat's subject, segment and label
from the declaration, not from its name."""
from __future__ import annotations

import pytest

from curation.filters import FilterConfig, FilterError, metric_of, resolve
from db.lake import metrics
from ui.thresholds_state import default_segment


def test_each_stat_is_declared_once_with_its_subject_segment_and_label():
    assert {m.name: m.subject for m in metrics.METRICS.values()} == {
        "vis_attn": "sample", "vis_attn_mass": "sample", "vis_attn_nosink": "sample", "vis_attn_dist": "sample", "text_tokens": "sample",
        "vis_gain": "sample", "blind_logp": "sample", "with_logp": "sample", "judge_yes": "sample", "grounded_p": "sample",
        "clip_score": "item", "clip_cosine": "item", "ocr_chars": "image", "ocr_boxes": "image",
        "dup_group": "image", "dup_size": "image", "dup_rank": "sample", "cluster": "image", "uniqueness": "image", "map_x": "image", "map_y": "image"}
    assert [m.name for m in metrics.METRICS.values() if m.has_segment] == ["vis_attn", "vis_attn_mass", "vis_attn_nosink", "vis_attn_dist", "text_tokens",
                                                                           "vis_gain", "blind_logp", "with_logp", "judge_yes"]
    assert metrics.label("clip_score") == "CLIPScore" and metrics.label("not_declared") == "not_declared"
    assert metrics.default_segment("vis_attn_dist", "question") == "question" and metrics.default_segment("ocr_boxes", "question") == ""
    assert default_segment("text_tokens") == "answer" and default_segment("not_declared") == ""
    with pytest.raises(ValueError, match="declared twice"):
        metrics.declare("vis_attn", "sample", "again")
    with pytest.raises(ValueError, match="one of item, image, sample"):
        metrics.declare("new_stat", "pixel", "x")


def test_a_filter_on_a_stat_no_one_declared_says_which_stats_there_are():
    with pytest.raises(FilterError, match="unknown stat 'clip_mystery'; stats are: vis_attn, "):
        metric_of("clip_mystery")
    from curation.filters import Condition

    with pytest.raises(FilterError, match="unknown stat 'ocr_words'"):
        resolve(None, FilterConfig([Condition("ocr_words", ">=", 3.0)]), models_of=lambda metric, segment: [])
