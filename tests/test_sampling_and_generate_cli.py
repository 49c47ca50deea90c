"""Stratified sampling (SQL) against a brute-force count, and generation from the command line through the
broker and a worker (in this process: tests/inprocess.py), with the template backend and with the
chat-completions backend over real HTTP."""
import collections
import json

import pytest

from config.settings import load_settings
from db.lake import sampling
from db.store import open_store

from .curation_store import ingest_and_generate
from .fake_llm import FakeChatServer


@pytest.fixture
def store_with_samples(home, tmp_path):
    return ingest_and_generate(tmp_path / "demo", names=("catalog.csv", "complaints.jsonl"))


def _brute_force(lake, by):
    rows = lake.fetchall(
        "SELECT s.sample_id, coalesce(i.category, p.category, '(none)'), coalesce(i.brand, p.brand, '(none)'), coalesce(i.region, '(none)') "
        "FROM samples s JOIN items i USING (item_id) LEFT JOIN (SELECT external_id, any_value(category) AS category, any_value(brand) AS brand "
        "FROM items WHERE kind = 'catalog' GROUP BY external_id) p ON p.external_id = i.product_ref"
    )
    index = {"category": 1, "brand": 2, "region": 3}
    return collections.Counter(tuple(r[index[b]] for b in by) for r in rows)


def test_stratified_sample_respects_quotas_and_is_deterministic(store_with_samples):
    lake = store_with_samples
    by = ["category", "region"]
    sql, params, names = sampling.stratified(lake, by=by, per_stratum=3, seed=1)
    table = sampling.balance(lake, sql, params, names)
    expected = _brute_force(lake, by)
    assert {tuple(r[:2]): r[2] for r in table} == dict(expected)
    assert all(r[3] == min(3, r[2]) for r in table)
    n = sampling.write_selection(lake, "s1", sql, params, names, 1, "samples", "run-a")
    assert n == sum(min(3, c) for c in expected.values())
    first = set(r[0] for r in lake.fetchall("SELECT subject_id FROM selections WHERE name = 's1'"))
    version = lake.current_version()
    assert sampling.write_selection(lake, "s1", sql, params, names, 1, "samples", "run-b") == n  # the same selection again:
    assert lake.current_version() == version  # nothing written, so nothing keyed by the store's version goes stale
    assert {r[0] for r in lake.fetchall("SELECT DISTINCT run_id FROM selections WHERE name = 's1'")} == {"run-a"}
    sql3, params3, _ = sampling.stratified(lake, by=by, per_stratum=2, seed=1)
    assert sampling.write_selection(lake, "s1", sql3, params3, names, 1, "samples", "run-b") < n  # another one under the name: replaced
    assert lake.current_version() > version
    assert {r[0] for r in lake.fetchall("SELECT DISTINCT run_id FROM selections WHERE name = 's1'")} == {"run-b"}
    sampling.write_selection(lake, "s1", sql, params, names, 1, "samples", "run-d")
    assert set(r[0] for r in lake.fetchall("SELECT subject_id FROM selections WHERE name = 's1'")) == first
    sql2, params2, _ = sampling.stratified(lake, by=by, per_stratum=3, seed=2)
    sampling.write_selection(lake, "s2", sql2, params2, names, 2, "samples", "run-c")
    second = set(r[0] for r in lake.fetchall("SELECT subject_id FROM selections WHERE name = 's2'"))
    assert second != first and len(second) == len(first)
    strata = [json.loads(s) for (s,) in lake.fetchall("SELECT stratum FROM selections WHERE name = 's1'")]
    assert set(strata[0]) == {"category", "region"}
    with pytest.raises(ValueError, match="stratify by"):
        sampling.stratified(lake, by=["colour"], per_stratum=1)


def test_time_buckets_do_not_depend_on_the_machines_time_zone(store_with_samples):
    lake = store_with_samples
    lake.transaction(lambda con: con.execute("UPDATE items SET event_time = TIMESTAMPTZ '2025-01-31 23:30:00+00'"))
    sql, params, names = sampling.stratified(lake, by=["time"], per_stratum=1000, of="items", time_bucket="month")
    utc = sampling.balance(lake, sql, params, names)
    lake.fetchall("SET TimeZone = 'Asia/Tokyo'")
    try:
        assert sampling.balance(lake, sql, params, names) == utc == [("2025-01", lake.scalar("SELECT count(*) FROM items"), lake.scalar("SELECT count(*) FROM items"))]
    finally:
        lake.fetchall("SET TimeZone = 'UTC'")


def test_sample_command_prints_the_balance(store_with_samples, cli):
    out = cli("sample", "--by", "category,time", "--per-stratum", "5", "--time-bucket", "quarter", "--name", "q", check=True)
    assert "category" in out.stdout and "time_bucket" in out.stdout and "before" in out.stdout and "after" in out.stdout
    assert "selection 'q':" in out.stdout
    dry = cli("sample", "--by", "brand", "--per-stratum", "1", "--of", "items", "--dry-run", check=True)
    assert "items before" in dry.stdout and "selection" not in dry.stdout
    bad = cli("sample", "--by", "colour", "--per-stratum", "1")
    assert bad.returncode == 2 and "stratify by one or more of" in bad.stderr


@pytest.mark.slow
def test_generate_from_the_command_line_through_a_worker(home, inprocess_worker, tmp_path, cli, shared_data):
    inprocess_worker("cpu")
    cli("ingest", str(shared_data / "abo-samples" / "listings.jsonl"), check=True)
    dry = cli("generate", "--backend", "template", "--dry-run", "1", check=True)
    assert "Q: " in dry.stdout and "evidence: title:" in dry.stdout
    printed = dry.stdout.split("prompt version ", 1)[1].split(";")[0]
    out = cli("generate", "--backend", "template", check=True)
    assert "succeeded" in out.stdout and "rejects 0" in out.stdout
    with FakeChatServer() as srv:
        dry = cli("generate", "--backend", "openai", "--base-url", srv.base_url, "--model", "good", "--tasks", "recognition", "--dry-run", "1", check=True)
        assert "<context_2>" in dry.stdout and "[user]" in dry.stdout and srv.requests == 0
        out = cli("generate", "--backend", "openai", "--base-url", srv.base_url, "--model", "good", "--tasks", "recognition,attribute_extraction",
                         "--concurrency", "4", check=True)
        assert "succeeded" in out.stdout and srv.requests == 6
    lake = open_store(load_settings().store)
    per_backend = dict(lake.fetchall("SELECT backend, count(DISTINCT task) FROM samples GROUP BY backend"))
    # no complaints in ABO: no damage, condition or comparison questions; only Solimo states a count ("365 portions")
    assert per_backend == {"openai": 2, "template": 5}
    # the dry run printed the version the samples carry
    assert {v for (v,) in lake.fetchall("SELECT DISTINCT prompt_version FROM samples WHERE backend = 'template'")} == {printed}
    bad = cli("generate", "--backend", "openai", "--model", "x")
    assert bad.returncode == 2 and "--base-url" in bad.stderr
    bad = cli("generate", "--backend", "template", "--tasks", "painting")
    assert bad.returncode == 2 and "painting: not one of recognition" in bad.stderr  # refused as the options are read
