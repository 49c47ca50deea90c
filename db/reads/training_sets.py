"""What a training run reads of a snapshot before its first step: one small row per member sample (its
product, for the held-out split; its image count; its text's size, for grouping by length), never the
samples' text or images (those are read a window at a time as the loop needs them:
``samples_view.samples_with_images``)."""
from __future__ import annotations

from typing import Any

from db.lake.connection import Lake, at_version

from .samples_view import first_samples


def plan_rows(lake: Lake, members_sql: str, version: int) -> dict[str, Any]:
    """Columns ``sample_id``, ``product``, ``images``, ``chars`` (numpy arrays), sorted by sample id, of the
    samples ``members_sql`` lists (SQL with a ``sample_id`` column), read at ``version``. ``product`` is
    what evaluation holds out by (a complaint's catalog product, else the item's own id), chosen as
    ``samples_view.samples_with_images`` chooses it."""
    samples = first_samples(version, "sample_id, item_id, image_ids, question, answer")
    return lake.fetchnumpy(
        f"SELECT m.sample_id, min(coalesce(i.product_ref, i.external_id, i.item_id)) AS product, "
        "  any_value(coalesce(json_array_length(s.image_ids), 0))::INTEGER AS images, "
        "  any_value(length(coalesce(s.question, '')) + length(coalesce(s.answer, '')))::INTEGER AS chars "
        f"FROM (SELECT DISTINCT sample_id FROM ({members_sql})) m JOIN {samples} s USING (sample_id) "
        f"JOIN {at_version('items', version)} i USING (item_id) GROUP BY m.sample_id ORDER BY m.sample_id"
    )
