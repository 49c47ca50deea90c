"""Free tags on samples (db/lake/tags.py): an append-only log honoured by filters ('tag in a,b') at their
DuckLake version, and the `vitpro samples tag|untag|tags` commands, on real ingested and generated data."""
from __future__ import annotations

import pytest

from curation.filters import Condition, FilterConfig, stats_for
from db.lake import tags

from .test_exclusions import scored  # noqa: F401 - the fixture


def _kept(lake, *conds: str, version=None) -> set[str]:
    config = FilterConfig([Condition.parse(c) for c in conds])
    return set(stats_for(lake, config, version=version).kept_ids(config))


def test_tags_are_a_log_and_filters_select_by_them(scored):
    lake = scored
    ids = [r[0] for r in lake.fetchall("SELECT DISTINCT sample_id FROM samples ORDER BY 1 LIMIT 5")]
    everyone = {r[0] for r in lake.fetchall("SELECT DISTINCT sample_id FROM samples")}
    before = lake.current_version()
    assert tags.add(lake, ids[:3], ["blurry"], by="ann") == 3
    assert tags.add(lake, ids[2:4], ["blurry", "needs-review"], by="bob") == 3  # (ids[2], blurry) was on already
    assert tags.tags_of(lake, ids) == {ids[0]: ["blurry"], ids[1]: ["blurry"], ids[2]: ["blurry", "needs-review"],
                                       ids[3]: ["blurry", "needs-review"]}
    assert tags.counts(lake) == [("blurry", 4), ("needs-review", 2)]
    assert _kept(lake, "tag in blurry") == set(ids[:4])
    assert _kept(lake, "tag in needs-review,other") == set(ids[2:4])
    assert _kept(lake, "tag == needs-review") == set(ids[2:4])
    assert _kept(lake, "tag not in blurry") == everyone - set(ids[:4])
    assert _kept(lake, "tag != needs-review") == everyone - set(ids[2:4])
    assert _kept(lake, "tag in blurry", version=before) == set()  # a filter (a snapshot) at an earlier version sees the tags of then
    assert tags.remove(lake, [ids[0], ids[4]], ["blurry"], by="ann") == 1  # ids[4] had no such tag
    assert _kept(lake, "tag in blurry") == set(ids[1:4])
    assert [(h["tag"], h["tagged"], h["by"]) for h in tags.history(lake, ids[0])] == [("blurry", True, "ann"), ("blurry", False, "ann")]
    for bad, message in ((["two words"], "is not a tag"), ([""], "name at least one tag"), (["x" * 61], "is not a tag")):
        with pytest.raises(tags.TagError, match=message):
            tags.add(lake, ids[:1], bad, by="ann")
    with pytest.raises(tags.TagError, match="no sample with id nope; no tag was changed"):
        tags.add(lake, [ids[0], "nope"], ["blurry"], by="ann")
    assert tags.tags_of(lake, [ids[0]]) == {}


def test_tags_from_the_command_line(scored, cli):
    lake = scored
    ids = [r[0] for r in lake.fetchall("SELECT DISTINCT sample_id FROM samples ORDER BY 1 LIMIT 2")]
    assert "no sample is tagged" in cli("samples", "tags", check=True).stdout
    out = cli("samples", "tag", *ids, "--tag", "blurry,dark", check=True).stdout
    assert "tagged 4 (sample, tag) pair(s)" in out
    task = lake.scalar("SELECT task FROM samples GROUP BY task ORDER BY count(*) DESC LIMIT 1")
    n = lake.scalar("SELECT count(DISTINCT sample_id) FROM samples WHERE task = ?", [task])
    out = cli("samples", "tag", "--where", f"task in {task}", "--tag", "review", input="y\n", check=True).stdout
    assert f"{n:,} sample(s) matching task in {task}" in out and tags.counts(lake)[0] == ("review", n)
    listing = cli("samples", "tags", check=True).stdout
    assert "review" in listing and "blurry" in listing
    assert "untagged 2 (sample, tag) pair(s)" in cli("samples", "untag", *ids, "--tag", "dark", check=True).stdout
    bad = cli("samples", "tag", ids[0], "--tag", "two words")
    assert bad.returncode == 2 and "is not a tag" in bad.stderr
    # and a filter on them from the command line
    cli("filter", "save", "reviewed", "--where", "tag in review", check=True)
    assert f"kept {n} of " in cli("filter", "show", "reviewed", check=True).stdout
