"""Duplicates by meaning, k-means clusters and uniqueness over unit vectors (curation/embedding_groups.py), against
all pairs computed the plain way on synthetic embeddings with planted near-copies."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.embedding_groups import SearchConfig, groups_by_cosine, kmeans, uniqueness


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _planted(n_base=1500, copies=2, dim=64, noise=0.08, seed=0):
    """Random directions in a few broad themes (so k-means has structure), each with near-copies (small noise)."""
    rng = np.random.default_rng(seed)
    themes = _unit(rng.normal(size=(12, dim)))
    base = _unit(themes[rng.integers(12, size=n_base)] + 0.6 * rng.normal(size=(n_base, dim)) / np.sqrt(dim) * 4)
    near = _unit(np.repeat(base[: n_base // 3], copies, axis=0) + noise * rng.normal(size=(n_base // 3 * copies, dim)) / np.sqrt(dim))
    return np.concatenate([base, near])


def _all_pairs_groups(v, min_cosine):
    sims = v @ v.T
    np.fill_diagonal(sims, -1)
    a, b = np.nonzero(sims >= min_cosine)
    _, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(v), len(v))), directed=False)
    groups = [np.flatnonzero(label == g).tolist() for g in np.unique(label)]
    return sorted((g for g in groups if len(g) >= 2), key=lambda g: g[0])


def test_small_sets_are_exact_and_large_ones_find_the_planted_copies():
    v = _planted()
    truth = _all_pairs_groups(v, 0.95)
    assert len(truth) >= 400  # the planted copies, and nothing else is that close
    assert groups_by_cosine(v, 0.95) == truth  # 2,500 vectors: below exact_below, all pairs
    # the cluster search (forced by a small exact_below): every planted group found, nothing joined that all pairs would not
    found = groups_by_cosine(v, 0.95, SearchConfig(exact_below=100, cluster_size=64))
    pairs = lambda groups: {(a, b) for g in groups for a in g for b in g if a < b}  # noqa: E731
    assert pairs(found) <= pairs(truth) and len(pairs(found)) >= 0.99 * len(pairs(truth))
    with pytest.raises(ValueError, match="cosine"):
        groups_by_cosine(v, 1.5)
    assert groups_by_cosine(v[:1], 0.9) == []


def test_kmeans_is_deterministic_and_numbers_clusters_by_size():
    v = _planted(n_base=900)
    c1, l1 = kmeans(v, 8, seed=3)
    c2, l2 = kmeans(v, 8, seed=3)
    assert np.array_equal(l1, l2) and np.allclose(c1, c2)
    sizes = np.bincount(l1, minlength=8)
    assert list(sizes) == sorted(sizes, reverse=True) and sizes.sum() == len(v)
    assert np.allclose(np.linalg.norm(c1, axis=1), 1, atol=1e-5)
    # each vector is nearest its own centroid
    assert np.array_equal(np.argmax(v @ c1.T, axis=1), l1)


def test_uniqueness_is_one_minus_the_mean_cosine_to_the_nearest_neighbours():
    v = _planted(n_base=600)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    expected = 1 - np.sort(sims, axis=1)[:, -5:].mean(axis=1)
    assert uniqueness(v, 5) == pytest.approx(expected, abs=1e-5)
    # the cluster search can only miss neighbours (never invent closer ones): never below the exact value, and close to it
    approx = uniqueness(v, 5, SearchConfig(exact_below=50, cluster_size=64))
    assert np.all(approx >= expected - 1e-5) and np.mean(approx - expected) < 0.02 and np.mean(np.abs(approx - expected) < 1e-4) > 0.4
    copies = np.arange(600, len(v))
    assert np.median(expected[copies]) < np.median(expected[200:600])  # a photo with copies is less unique
    assert np.isnan(uniqueness(v[:1])).all()
