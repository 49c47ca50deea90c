"""Annotation work on a pilot: assignments with an overlap, each annotator's queue and progress, a lock
that keeps a sample one annotator has open from the others, guidelines, and the note saved with a label;
in the store, from the command line and on the Pilot page (AppTest on a real store)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from db.app import pilots
from db.app.models import PilotLock

from .test_ui_pages import ADMIN, ANNA, page, texts, ui_store  # noqa: F401 - ui_store is a fixture
from .test_ui_pilot import _pilot, _scored


def test_assign_spreads_each_sample_over_overlap_annotators_evenly(ui_store):
    home, lake, engine = ui_store
    sids = [sid for sid, _ in _scored(lake)][:10]
    pid = _pilot(lake, engine, "assigned", sids)
    assert pilots.queue(engine, pid, "anyone") == sids  # no assignments: everyone labels everything
    given = pilots.assign(engine, pid, ["ann", "bob", "cy"], overlap=2)
    assert sorted(given.values()) == [6, 7, 7] and sum(given.values()) == 20  # 10 samples x 2, within one of each other
    per_sample = Counter(sid for ids in pilots.assignments(engine, pid).values() for sid in ids)
    assert set(per_sample.values()) == {2} and set(per_sample) == set(sids)  # every sample by exactly two
    shared = pilots.assignments(engine, pid)
    assert all(shared[a] & shared[b] for a, b in (("ann", "bob"), ("ann", "cy"), ("bob", "cy")))  # every pair shares samples
    assert pilots.queue(engine, pid, "bob") == [sid for sid in sids if sid in shared["bob"]] and pilots.queue(engine, pid, "dan") == []
    pilots.set_label(engine, pid, pilots.queue(engine, pid, "bob")[0], "bob", "grounded")
    assert dict((a, (n, d)) for a, n, d in pilots.progress(engine, pid)) == {"ann": (given["ann"], 0), "bob": (given["bob"], 1), "cy": (given["cy"], 0)}
    for people, overlap, message in ((["ann"], 2, "1 to 1"), ([], 1, "name the annotators"), (["ann", "bob"], 0, "1 to 2")):
        with pytest.raises(pilots.PilotError, match=message):
            pilots.assign(engine, pid, people, overlap)


def test_a_lock_keeps_an_open_sample_from_the_others_until_it_expires(ui_store):
    home, lake, engine = ui_store
    sids = [sid for sid, _ in _scored(lake)][:3]
    pid = _pilot(lake, engine, "locks", sids)
    assert pilots.claim(engine, pid, sids[0], "ann") is None
    assert pilots.claim(engine, pid, sids[0], "bob") == "ann"  # held
    assert pilots.claim(engine, pid, sids[0], "ann") is None  # renewed by its holder
    assert pilots.locked_by_others(engine, pid, "bob") == {sids[0]: "ann"} and pilots.locked_by_others(engine, pid, "ann") == {}
    assert pilots.claim(engine, pid, sids[1], "ann") is None  # ann moves on: the sample before is free again
    assert pilots.locked_by_others(engine, pid, "bob") == {sids[1]: "ann"}
    assert pilots.claim(engine, pid, sids[0], "ann") is None
    with Session(engine) as s, s.begin():  # time passes: the lock expires
        s.execute(update(PilotLock).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert pilots.locked_by_others(engine, pid, "bob") == {} and pilots.claim(engine, pid, sids[0], "bob") is None
    pilots.release(engine, pid, "bob")
    assert pilots.locked_by_others(engine, pid, "ann") == {}


def test_the_pilot_page_serves_each_annotator_their_queue_with_guidelines_locks_and_notes(ui_store):
    home, lake, engine = ui_store
    sids = [sid for sid, _ in _scored(lake)][:6]
    pid = _pilot(lake, engine, "queues", sids)
    pilots.assign(engine, pid, ["admin", "anna"], overlap=1)  # three samples each
    pilots.set_guidelines(engine, pid, "Mark **not grounded** when the photo cannot show the answer.")
    anna_queue = pilots.queue(engine, pid, "anna")
    admin_queue = pilots.queue(engine, pid, "admin")
    assert len(anna_queue) == len(admin_queue) == 3 and not set(anna_queue) & set(admin_queue)
    pilots.claim(engine, pid, anna_queue[0], "admin")  # someone else has anna's first sample open
    anna = page("pilot", who=ANNA, pilot_name="queues")
    assert not anna.exception
    assert "sample **" in texts(anna) and " of 3" in texts(anna)  # her queue: 3 of the pilot's 6
    assert any("photo cannot show the answer" in str(m.value) for m in anna.markdown)  # the guidelines
    assert "sample **2** of 3" in texts(anna)  # the sample held open by another is not served first
    anna.text_input(key=f"pilot_note_{pid}").input("logo hidden by the hand")
    anna.button(key="pilot_not_grounded").click().run()
    (row,) = pilots.labels(engine, pid, "anna")
    assert (row.sample_id, row.label, row.note) == (anna_queue[1], "not_grounded", "logo hidden by the hand")
    assert pilots.locked_by_others(engine, pid, "admin") == {anna_queue[2]: "anna"}  # labelled: released; the next one is now hers
    admin = page("pilot", pilot_name="queues")
    progress = next(df.value for df in admin.dataframe if "to label" in df.value.columns)
    assert dict(zip(progress["annotator"], progress["labelled"])) == {"admin": 0, "anna": 1}
    nobody = page("pilot", who=ANNA, pilot_name="ui-pilot")  # a pilot without assignments: every sample, as before
    assert not nobody.exception and "No sample of this pilot is assigned to you" not in texts(nobody)


def test_assign_progress_and_guidelines_from_the_command_line(ui_store, cli, tmp_path):
    home, lake, engine = ui_store
    sids = [sid for sid, _ in _scored(lake)][:4]
    _pilot(lake, engine, "cli-queues", sids)
    out = cli("pilot", "assign", "cli-queues", "--annotators", "ann,bob", "--overlap", "2", check=True).stdout
    assert "assigned to 2 annotator(s): ann 4, bob 4" in out
    (tmp_path / "g.md").write_text("Look at the label first.\n")
    assert "saved" in cli("pilot", "guidelines", "cli-queues", "--file", str(tmp_path / "g.md"), check=True).stdout
    assert cli("pilot", "guidelines", "cli-queues", check=True).stdout.strip() == "Look at the label first."
    labelled = cli("pilot", "label", "cli-queues", "--annotator", "ann", input="g\nq\n", check=True).stdout
    assert "guidelines:" in labelled and "Look at the label first." in labelled and "1 label(s) saved" in labelled
    progress = cli("pilot", "progress", "cli-queues", check=True).stdout
    assert any(line.split()[:3] == ["ann", "4", "1"] for line in progress.splitlines())
    outsider = cli("pilot", "label", "cli-queues", "--annotator", "cy")
    assert outsider.returncode == 2 and "no sample of 'cli-queues' is assigned to cy" in outsider.stderr
    bad = cli("pilot", "assign", "cli-queues", "--annotators", "ann", "--overlap", "2")
    assert bad.returncode == 2 and "1 to 1" in bad.stderr


def test_pilot_list_counts_the_samples_a_pilot_holds(ui_store, cli):
    """A pilot asked for more samples than it got (or grown from the Gallery) lists what it holds."""
    home, lake, engine = ui_store
    sids = [sid for sid, _ in _scored(lake)][:5]
    _pilot(lake, engine, "counted", sids[:3])  # made with size 0, then 3 added
    pilots.add_samples(lake, engine, "counted", sids[3:])
    line = next(line for line in cli("pilot", "list", check=True).stdout.splitlines() if line.split()[:1] == ["counted"])
    assert line.split()[1] == "5"
