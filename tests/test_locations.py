"""db.storage.locations: one interface for a local path and an s3:// URL (joined, read, listed, copied here,
written there through a workspace), against a folder and a real S3-protocol server (moto, signed requests)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.storage import objects
from db.storage.locations import LocalLocation, Location, S3Location, check_fresh


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_a_location_is_made_from_how_it_is_written():
    local = Location.of("runs/a/")
    assert isinstance(local, LocalLocation) and local.is_local and str(local) == "runs/a/"  # as given: a job keeps its spelling
    assert str(local.join("adapter", "x.json")) == "runs/a/adapter/x.json" and local.join("b").name == "b"
    assert str(local.absolute()) == str(Path("runs/a").resolve()) and str(Location.of(Path("/tmp/x")).parent) == "/tmp"
    remote = Location.of("s3://bucket/runs/a/")
    assert isinstance(remote, S3Location) and not remote.is_local and str(remote) == "s3://bucket/runs/a"
    assert str(remote.join("adapter", "x.json")) == "s3://bucket/runs/a/adapter/x.json" and str(remote.join("b/c")) == "s3://bucket/runs/a/b/c"
    assert remote.name == "a" and str(remote.parent) == "s3://bucket/runs" and str(Location.of("s3://bucket/x.csv").parent) == "s3://bucket"
    assert remote.absolute() == Location.of("s3://bucket/runs/a") and Location.of(remote) is remote
    with pytest.raises(ValueError, match="credentials do not belong"):
        Location.of("s3://KEY:SECRET@bucket/prefix")
    with pytest.raises(ValueError, match="no bucket"):
        Location.of("s3:///prefix")


def test_a_local_folder_read_listed_and_written_in_place(tmp_path):
    root = Location.of(str(_tree(tmp_path / "out", {"a.txt": b"one", "sub/b.bin": b"22"})))
    assert root.exists() and root.holds_files() and not root.is_file() and not Location.of(str(tmp_path / "none")).holds_files()
    assert root.join("a.txt").is_file() and root.join("a.txt").read_text() == "one" and root.join("a.txt").stamp()
    assert root.stamp() is None and root.join("none").stamp() is None
    assert sorted(root.files()) == [("a.txt", 3), ("sub/b.bin", 2)] and root.size() == 5
    assert root.local_path(tmp_path / "cache") == tmp_path / "out" and not (tmp_path / "cache").exists()
    work = root.workspace(tmp_path / "scratch")
    assert work.path == tmp_path / "out" and not work.staged
    work.pull("sub")  # nothing to fetch: the folder is the location
    assert str(work.push("a.txt")) == str(tmp_path / "out" / "a.txt") and work.push() == root
    root.join("sub").remove()
    assert sorted(root.files()) == [("a.txt", 3)]
    root.check_reachable()


def test_an_s3_prefix_read_listed_copied_here_and_written_through_a_scratch_folder(s3_env, tmp_path):
    root = Location.of(f"s3://{s3_env}/out")
    assert not root.exists() and not root.holds_files() and root.stamp() is None
    work = root.workspace(tmp_path / "scratch")
    assert work.staged and work.path == tmp_path / "scratch"
    _tree(work.path, {"data.jsonl": b"{}\n", "images/x.jpg": b"jpeg", "manifest.json": b'{"format": "trl"}'})
    assert str(work.push(last=("manifest.json",))) == f"s3://{s3_env}/out"
    assert root.holds_files() and root.exists() and root.join("manifest.json").is_file() and not root.join("images").is_file()
    assert json.loads(root.join("manifest.json").read_text()) == {"format": "trl"} and root.join("manifest.json").stamp()
    assert sorted(root.files()) == [("data.jsonl", 3), ("images/x.jpg", 4), ("manifest.json", 17)] and root.size() == 24
    with pytest.raises(objects.ObjectStoreError, match="too_large|over the limit"):
        root.join("data.jsonl").read_bytes(max_bytes=1)
    # one file of the workspace to its place; replacing a folder leaves nothing of the old one
    (work.path / "log.txt").write_text("done")
    assert str(work.push("log.txt")) == f"s3://{s3_env}/out/log.txt" and root.join("log.txt").read_text() == "done"
    (work.path / "images" / "x.jpg").unlink()
    (work.path / "log.txt").unlink()
    work.push(replace=True, last=("manifest.json",))
    assert sorted(rel for rel, _ in root.files()) == ["data.jsonl", "manifest.json"]
    # a copy on this machine: made once, in the cache
    copy = root.local_path(tmp_path / "cache")
    assert copy == tmp_path / "cache" / s3_env / "out" and (copy / "manifest.json").read_text() == '{"format": "trl"}'
    root.join("data.jsonl").remove()
    assert root.local_path(tmp_path / "cache") == copy and (copy / "data.jsonl").is_file()  # fixed: not fetched again
    with pytest.raises(objects.ObjectStoreError, match=f"no model under s3://{s3_env}/nothing/: nothing is stored there"):
        Location.of(f"s3://{s3_env}/nothing").local_path(tmp_path / "cache", what="model")
    # pulling replaces what the scratch folder had there with what reached the store
    other = root.workspace(tmp_path / "elsewhere")
    _tree(other.path, {"stale.txt": b"x"})
    other.pull()
    assert sorted(p.name for p in other.path.rglob("*") if p.is_file()) == ["manifest.json"]
    root.remove()
    assert not root.holds_files()
    root.check_reachable()
    with pytest.raises(objects.ObjectStoreError, match="does not exist"):
        Location.of("s3://no-such-bucket-here/x").check_reachable()


def test_an_output_that_already_holds_files_is_refused(s3_env, tmp_path):
    assert check_fresh(str(tmp_path / "new"), "evaluation") == str(tmp_path / "new")
    _tree(tmp_path / "used", {"results.json": b"{}"})
    with pytest.raises(ValueError, match=r"already holds an earlier evaluation's files; pick another name \(or remove the folder\)"):
        check_fresh(str(tmp_path / "used"), "evaluation")
    assert check_fresh(f"s3://{s3_env}/evals/a/", "evaluation") == f"s3://{s3_env}/evals/a"
    objects.put_bytes(objects.ObjectURL.parse(f"s3://{s3_env}/evals/a/results.json"), b"{}")
    with pytest.raises(ValueError, match=r"s3://.*/evals/a already holds an earlier evaluation's files; pick another name \(or remove them\)"):
        check_fresh(f"s3://{s3_env}/evals/a", "evaluation")
