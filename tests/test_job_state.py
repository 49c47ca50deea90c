"""The job state machine on its own (no broker): claims, leases, reaping, phases, cancel, retry."""
import threading
import time
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from config.settings import load_settings
from db.app import jobs
from db.app.engine import write_engine
from db.app.models import WorkUnit
from db.store import StoreConfig, init_store


def _engine(config: StoreConfig | None = None):
    config = config or load_settings().store
    init_store(config)
    return write_engine(config.app_url)


def _job(engine, **kw):
    return jobs.create_job(engine, kind="ingest", queue="cpu", params={"x": 1}, launched_by="tester", **kw)


def _claim_race(engine, uid, n):
    """n threads claim the same unit at the same instant; returns the winners."""
    winners = []
    barrier = threading.Barrier(n)

    def claim(k):
        barrier.wait()
        if jobs.claim_unit(engine, uid, f"w{k}", 30) is not None:
            winners.append(k)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return winners


def _run_plan(engine, job_id, n_units=3, size=10):
    uid = jobs.unit_id(job_id, 0)
    assert jobs.claim_unit(engine, uid, "w1", 30) is not None
    assert jobs.complete_plan(engine, uid, "w1", [jobs.UnitSpec({"i": i}, size) for i in range(n_units)], {"set": {"rows": n_units * size}})
    return jobs.advance_job(engine, job_id)


def test_plan_work_finalize_and_counts(home):
    engine = _engine()
    job_id, first = _job(engine)
    assert first == [(f"{job_id}.00000", "cpu")]
    assert jobs.get_job(engine, job_id).status == "queued"
    released = _run_plan(engine, job_id)
    assert sorted(released) == [(f"{job_id}.0000{i}", "cpu") for i in (1, 2, 3)]
    job = jobs.get_job(engine, job_id)
    assert job.status == "running" and (job.progress_done, job.progress_total) == (0, 30)
    for i, (uid, _) in enumerate(sorted(released)):
        claimed = jobs.claim_unit(engine, uid, f"w{i}", 30)
        assert claimed.payload == {"i": i} and claimed.params == {"x": 1} and claimed.attempts == 1
        assert jobs.complete_unit(engine, uid, f"w{i}", {"ingested": 10 - i, "failed": i})
        nxt = jobs.advance_job(engine, job_id)
        assert nxt == ([] if i < 2 else [(f"{job_id}.final", "cpu")])  # finalize only after all work
    assert jobs.get_job(engine, job_id).progress_done == 30
    fin = f"{job_id}.final"
    assert jobs.claim_unit(engine, fin, "w9", 30) is not None
    jobs.complete_unit(engine, fin, "w9", {"set": {"ingested": 25}})  # finalize recounted from the store
    jobs.advance_job(engine, job_id)
    job = jobs.get_job(engine, job_id)
    assert job.status == "succeeded" and job.finished_at is not None
    assert job.counts == {"ingested": 25, "failed": 3, "rows": 30}
    assert sorted(r["ingested"] for r in jobs.work_results(engine, job_id)) == [8, 9, 10]


def test_a_unit_is_claimed_once_even_under_a_race(home):
    engine = _engine()
    job_id, _ = _job(engine)
    uid = jobs.unit_id(job_id, 0)
    assert len(_claim_race(engine, uid, 8)) == 1
    assert jobs.claim_unit(engine, uid, "late", 30) is None  # duplicate delivery does nothing


def test_postgres_claim_race_and_states(pg_url, tmp_path):
    engine = _engine(StoreConfig(pg_url, str(tmp_path / "lake") + "/", pg_url))
    job_id, _ = _job(engine)
    released = _run_plan(engine, job_id, n_units=1)
    assert len(_claim_race(engine, released[0][0], 6)) == 1


def test_expired_lease_is_reaped_and_the_old_owner_cannot_finish(home):
    engine = _engine()
    job_id, _ = _job(engine)
    uid = _run_plan(engine, job_id, n_units=1)[0][0]
    assert jobs.claim_unit(engine, uid, "dead-worker", 0.2) is not None
    assert jobs.claim_unit(engine, uid, "other", 30) is None  # lease still valid
    time.sleep(0.4)
    resent = jobs.reap(engine, lease_seconds=30, max_attempts=3)
    assert (uid, "cpu") in resent
    assert not jobs.renew_lease(engine, uid, "dead-worker", 30)
    assert not jobs.complete_unit(engine, uid, "dead-worker", {"ingested": 99})
    claimed = jobs.claim_unit(engine, uid, "new-worker", 30)
    assert claimed.attempts == 2
    assert jobs.complete_unit(engine, uid, "new-worker", {"ingested": 1})
    unit = next(u for u in jobs.job_units(engine, job_id) if u.id == uid)
    assert unit.status == "done" and unit.result == {"ingested": 1}


def test_lost_messages_are_resent_with_back_off(home):
    engine = _engine()
    job_id, first = _job(engine)
    uid = first[0][0]
    jobs.mark_dispatched(engine, [uid])
    assert jobs.reap(engine, lease_seconds=30, max_attempts=3) == []  # just sent: not yet suspicious
    with Session(engine) as s, s.begin():
        s.execute(update(WorkUnit).where(WorkUnit.id == uid).values(dispatched_at=jobs.utcnow() - timedelta(seconds=61)))
    assert jobs.reap(engine, lease_seconds=30, max_attempts=3) == [(uid, "cpu")]
    assert jobs.redispatch_delay(30, 1) == 60 and jobs.redispatch_delay(30, 3) == 240
    # while a worker is busy on the same queue, a waiting unit is just waiting: no copy is sent
    other, _ = _job(engine)
    jobs.claim_unit(engine, jobs.unit_id(other, 0), "busy-worker", 30)
    assert jobs.reap(engine, lease_seconds=30, max_attempts=3) == []


def test_attempts_exhausted_fail_the_job(home):
    engine = _engine()
    job_id, _ = _job(engine, finalize=False)
    uid = _run_plan(engine, job_id, n_units=1)[0][0]
    for attempt in (1, 2):
        jobs.claim_unit(engine, uid, "w", 30)
        assert jobs.fail_attempt(engine, uid, "w", f"boom {attempt}", max_attempts=3) == "pending"
    jobs.claim_unit(engine, uid, "w", 30)
    assert jobs.fail_attempt(engine, uid, "w", "boom 3", max_attempts=3) == "failed"
    jobs.advance_job(engine, job_id)
    job = jobs.get_job(engine, job_id)
    assert job.status == "failed" and "boom 3" in job.error and "1 of 2 units failed" in job.error
    # retry gives it another go
    resent = jobs.retry_job(engine, job_id)
    assert resent == [(uid, "cpu")]
    jobs.claim_unit(engine, uid, "w", 30)
    jobs.complete_unit(engine, uid, "w", {"ingested": 5})
    jobs.advance_job(engine, job_id)
    assert jobs.get_job(engine, job_id).status == "succeeded"


def test_cancel_drops_pending_units_and_waits_for_running_ones(home):
    engine = _engine()
    job_id, _ = _job(engine)
    released = sorted(_run_plan(engine, job_id, n_units=3))
    running = released[0][0]
    jobs.claim_unit(engine, running, "w", 30)
    assert jobs.request_cancel(engine, job_id) == "cancelling"
    jobs.advance_job(engine, job_id)
    statuses = {u.id: u.status for u in jobs.job_units(engine, job_id)}
    assert statuses[released[1][0]] == "cancelled" and statuses[released[2][0]] == "cancelled"
    assert statuses[running] == "leased"
    assert jobs.get_job(engine, job_id).status == "cancelling"
    jobs.complete_unit(engine, running, "w", {}, status="cancelled")  # the worker stops between batches
    fin = jobs.advance_job(engine, job_id)
    assert fin == [(f"{job_id}.final", "cpu")]  # finalize still runs: it keeps the store consistent
    jobs.claim_unit(engine, fin[0][0], "w", 30)
    jobs.complete_unit(engine, fin[0][0], "w", {})
    jobs.advance_job(engine, job_id)
    assert jobs.get_job(engine, job_id).status == "cancelled"
    assert jobs.request_cancel(engine, job_id) == "cancelled"  # finished jobs stay as they are


def test_logs_are_kept_to_a_tail(home):
    engine = _engine()
    job_id, _ = _job(engine)
    for i in range(jobs.LOG_KEEP + 80):
        jobs.add_log(engine, job_id, f"line {i}")
    tail = jobs.log_tail(engine, job_id, 3)
    assert [line.message for line in tail] == [f"line {jobs.LOG_KEEP + 77}", f"line {jobs.LOG_KEEP + 78}", f"line {jobs.LOG_KEEP + 79}"]
    assert len(jobs.log_tail(engine, job_id, 10_000)) <= jobs.LOG_KEEP + 50


def test_a_plan_of_more_than_99999_units_fits(home):
    engine = _engine()
    job_id, _ = _job(engine)
    uid = jobs.unit_id(job_id, 0)
    jobs.claim_unit(engine, uid, "w", 30)
    assert jobs.complete_plan(engine, uid, "w", [jobs.UnitSpec({}, 1) for _ in range(100_050)], {})
    released = jobs.advance_job(engine, job_id)
    assert len(released) == 100_050 and (f"{job_id}.100050", "cpu") in released
    assert jobs.get_job(engine, job_id).progress_total == 100_050
