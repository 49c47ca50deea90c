"""The jobs over stored CLIP image vectors (issue 28): near-duplicates by meaning (`dedup images --method clip`),
k-means clusters and uniqueness (`clusters`), the 2-D map (`map`), and the cluster stratum of `sample`; on the
real ABO photos relisted with copies (tests/test_dedup.py), embedded by the tiny random CLIP model. Its vectors
mean nothing, so what is asserted is what holds for any model: one content, one vector, one group, one cluster,
one place; every image accounted for; the refusals before anything is queued."""
from __future__ import annotations

import numpy as np
import pytest

from curation.clip_score import ClipConfig
from curation.filters import FilterConfig, stats_for
from curation.projection import place_by_neighbours, project
from db.app import jobs as jobs_db
from db.app.engine import write_engine
from jobs.clip_score import ClipScoreJob
from jobs.clusters import ClustersJob
from jobs.dedup import DedupJob
from jobs.generate import GenerateJob
from jobs.map import MapJob

from .test_dedup import _relisted_store
from .test_generation import _run_job

pytestmark = pytest.mark.slow


def _per_content(lake, metric, model_prefix=""):
    """{sha256: the set of values its images got} for an image stat (of the models whose id starts so)."""
    out: dict = {}
    for sha, value in lake.fetchall("SELECT i.sha256, s.value FROM scores s JOIN images i ON i.image_id = s.subject_id "
                                    "WHERE s.metric = ? AND starts_with(s.model_id, ?)", [metric, model_prefix]):
        out.setdefault(sha, set()).add(value)
    return out


def test_clip_groups_clusters_and_the_map_over_stored_vectors(home, shared_data, tmp_path, tiny_models, cli):
    from config.settings import load_settings

    lake = _relisted_store(tmp_path, shared_data)
    assert _run_job("generate", GenerateJob(backend="template").params()).status == "succeeded"
    engine = write_engine(load_settings().app_url)
    jobs_before = len(jobs_db.list_jobs(engine, limit=100))
    # nothing embedded yet: each job over vectors is refused before it is queued, saying what to run
    for args in (("dedup", "images", "--method", "clip"), ("clusters",), ("map",)):
        refused = cli(*args)
        assert refused.returncode == 2 and "run `vitpro score clip` first" in refused.stderr, args
    assert len(jobs_db.list_jobs(engine, limit=100)) == jobs_before

    assert _run_job("clip_score", ClipScoreJob(ClipConfig(model=str(tiny_models["clip"]))).params()).status == "succeeded"
    contents = lake.scalar("SELECT count(DISTINCT sha256) FROM images")
    assert lake.scalar("SELECT count(*) FROM image_embeddings") == contents
    assert "no embeddings of model 'other'" in cli("clusters", "--embedding-model", "other").stderr

    job = _run_job("dedup", DedupJob(method="clip", min_cosine=0.999, rank_by="").params())
    assert job.status == "succeeded" and job.counts["grouping"] == "clip:0.999" and job.counts["images_not_hashed"] == 0
    groups = _per_content(lake, "dup_group")
    assert len(groups) == contents and all(len(v) == 1 for v in groups.values())  # one content, one group
    shared = lake.scalar("SELECT sha256 FROM images GROUP BY sha256 HAVING count(DISTINCT item_id) > 1")  # the byte-identical copy
    assert lake.scalar("SELECT min(s.value) FROM scores s JOIN images i ON i.image_id = s.subject_id "
                       "WHERE s.metric = 'dup_size' AND s.model_id = 'clip:0.999' AND i.sha256 = ?", [shared]) >= 2

    job = _run_job("clusters", ClustersJob(k=3).params())
    assert job.status == "succeeded", job.error
    clusters = _per_content(lake, "cluster")
    assert len(clusters) == contents and set().union(*clusters.values()) == {0.0, 1.0, 2.0}
    assert lake.scalar("SELECT count(value) FROM scores WHERE metric = 'uniqueness'") == lake.scalar("SELECT count(*) FROM images")
    # a stratum and a filter
    out = cli("sample", "--by", "cluster", "--per-stratum", "2", "--name", "by-cluster", check=True).stdout
    assert "3 strata" in out
    config = FilterConfig.from_dict({"conditions": [{"metric": "uniqueness", "op": ">=", "percentile": 50.0}]})
    report = stats_for(lake, config).report(config)
    assert 0 < report.kept < report.kept + report.dropped

    for method in ("pca", "tsne"):
        job = _run_job("map", MapJob(method=method).params())
        assert job.status == "succeeded", job.error
        xs = _per_content(lake, "map_x", f"{method}@")
        assert len(xs) == contents and all(len(v) == 1 for v in xs.values())
    assert {m for (m,) in lake.fetchall("SELECT DISTINCT model_id FROM scores WHERE metric = 'map_y'")} == {
        f"pca@{lake.scalar('SELECT DISTINCT model_id FROM image_embeddings')}", f"tsne@{lake.scalar('SELECT DISTINCT model_id FROM image_embeddings')}"}


def test_the_map_places_images_left_out_of_the_fit_among_their_nearest_sampled_neighbours():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    v = np.concatenate([c + 0.05 * rng.normal(size=(200, 16)) for c in centres]).astype(np.float32)
    xy = project(v, method="tsne", sample_size=150, seed=0)
    assert xy.shape == (600, 2) and np.isfinite(xy).all()
    # each blob stays together on the map: points are nearer their own blob's centre than another's
    centre = np.stack([xy[k * 200:(k + 1) * 200].mean(axis=0) for k in range(3)])
    own = np.linalg.norm(xy - np.repeat(centre, 200, axis=0), axis=1)
    other = np.min([np.linalg.norm(xy - centre[(np.arange(600) // 200 + j) % 3], axis=1) for j in (1, 2)], axis=0)
    assert np.mean(own < other) > 0.95
    # a point off the sample sits at the weighted mean of its neighbours' places, a sampled one keeps its own
    placed = place_by_neighbours(np.eye(3), np.array([0, 1]), np.array([[0.0, 0.0], [10.0, 10.0]]), k=2)
    assert placed[0].tolist() == [0.0, 0.0] and placed[1].tolist() == [10.0, 10.0] and 0 <= placed[2][0] <= 10
    assert project(v[:3], method="pca").shape == (3, 2)
