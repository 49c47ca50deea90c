"""Near-duplicates by meaning, clusters and uniqueness over L2-normalised image embeddings (CLIP), without all pairs.

SemDeDup's way: spherical k-means cuts the vectors into clusters; close pairs are looked for only inside clusters,
with a matrix product per cluster. Two vectors on either side of a cluster border would be missed, so each vector is
compared with the members of its ``probes`` nearest clusters, which catches pairs near a border at the cost of a
few times more products (approximate: a pair whose vectors probe no common cluster is missed). Below ``exact_below`` vectors everything is compared (exact).

Cost: the clusters hold about ``cluster_size`` vectors (k = n / cluster_size, capped at ``max_clusters``), so the
comparisons grow as n x cluster_size x probes x dim, linearly in n until the cap; k-means itself runs on a sample of
at most ``train_size`` vectors, and assigning every vector is n x k x dim.

Pure numpy/scipy; deterministic for a seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Duplicates by meaning: two product photos whose CLIP image vectors have a cosine of at least this. SemDeDup reports
# semantic duplicates of web images around 0.95 for ViT-B CLIP models; a random (demo) model's cosines mean nothing.
DEFAULT_MIN_COSINE = 0.95


@dataclass(frozen=True)
class SearchConfig:
    exact_below: int = 4096  # up to this many vectors, all pairs (in row blocks): exact and quick
    cluster_size: int = 256  # the k-means clusters' mean size: what a cluster's all-pairs product costs
    max_clusters: int = 1024  # assigning every vector costs n x k x dim: k stops growing here
    probes: int = 2  # clusters each vector is searched in (its nearest ones)
    train_size: int = 50_000  # k-means is fitted on a sample of at most this many vectors
    iterations: int = 12
    block: int = 2048  # rows per matrix product: bounds memory (block x n floats)
    seed: int = 0


def _check(vectors: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"vectors must be an n x dim matrix, not shape {v.shape}")
    return v


def kmeans(vectors: np.ndarray, k: int, *, iterations: int = 12, train_size: int = 50_000, seed: int = 0, block: int = 2048
           ) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (cosine): ``(centroids k x dim, labels n)``. Fitted on a sample of at most ``train_size``
    vectors (k-means++-like seeding by distance), then every vector takes its nearest centroid. Clusters are numbered
    by size, largest first, so cluster 0 is the biggest."""
    v = _check(vectors)
    n = len(v)
    if n == 0:
        return np.zeros((0, v.shape[1] if v.ndim == 2 else 0), np.float32), np.zeros(0, np.int64)
    k = max(1, min(int(k), n))
    rng = np.random.default_rng(seed)
    train = v if n <= train_size else v[np.sort(rng.choice(n, train_size, replace=False))]
    # seeding: the first centre at random, each next one drawn far from those chosen (k-means++ on a subsample)
    pool = train if len(train) <= 20 * k else train[rng.choice(len(train), 20 * k, replace=False)]
    centres = [pool[rng.integers(len(pool))]]
    best = 1.0 - pool @ centres[0]
    for _ in range(1, k):
        weights = np.maximum(best, 0) ** 2
        total = weights.sum()
        pick = rng.integers(len(pool)) if total <= 0 else rng.choice(len(pool), p=weights / total)
        centres.append(pool[pick])
        best = np.minimum(best, 1.0 - pool @ pool[pick])
    c = np.stack(centres).astype(np.float32)
    for _ in range(iterations):
        labels = nearest_centres(train, c, 1, block=block)[:, 0]
        sums = np.zeros_like(c)
        np.add.at(sums, labels, train)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        c = np.where(empty[:, None], c, sums / np.where(norms == 0, 1, norms)).astype(np.float32)
    labels = nearest_centres(v, c, 1, block=block)[:, 0]
    order = np.argsort(-np.bincount(labels, minlength=len(c)), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return c[order], rank[labels]


def nearest_centres(vectors: np.ndarray, centres: np.ndarray, m: int, *, block: int = 2048) -> np.ndarray:
    """Each vector's ``m`` nearest centres by cosine (n x m indices, nearest first), in row blocks."""
    m = min(m, len(centres))
    out = np.empty((len(vectors), m), dtype=np.int64)
    for start in range(0, len(vectors), block):
        sims = vectors[start:start + block] @ centres.T
        top = np.argpartition(-sims, m - 1, axis=1)[:, :m] if m < len(centres) else np.tile(np.arange(len(centres)), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start:start + block] = np.take_along_axis(top, order, axis=1)
    return out


def _candidate_blocks(v: np.ndarray, config: SearchConfig):
    """Yield (rows, cols) index arrays whose products cover what the search compares: each vector (a row) against the
    members (the columns) of every cluster it probes, each such pair once per direction at most."""
    n = len(v)
    if n <= config.exact_below:
        everyone = np.arange(n)
        for start in range(0, n, config.block):
            yield everyone[start:start + config.block], everyone
        return
    k = max(2, min(config.max_clusters, n // config.cluster_size))
    centres, labels = kmeans(v, k, iterations=config.iterations, train_size=config.train_size, seed=config.seed, block=config.block)
    probe = nearest_centres(v, centres, config.probes, block=config.block)
    probe[:, 0] = labels  # a vector's own cluster first, whatever the rounding
    members = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[members], np.arange(len(centres) + 1))
    # visitors: the vectors probing a cluster that is not their own
    flat_probe, flat_rows = probe[:, 1:].ravel(), np.repeat(np.arange(n), probe.shape[1] - 1)
    visit_order = np.argsort(flat_probe, kind="stable")
    visit_starts = np.searchsorted(flat_probe[visit_order], np.arange(len(centres) + 1))
    for c in range(len(centres)):
        own = members[starts[c]:starts[c + 1]]
        if len(own) == 0:
            continue
        rows = np.concatenate([own, np.unique(flat_rows[visit_order[visit_starts[c]:visit_starts[c + 1]]])])
        for start in range(0, len(rows), config.block):
            yield rows[start:start + config.block], own


def groups_by_cosine(vectors: np.ndarray, min_cosine: float = DEFAULT_MIN_COSINE, config: SearchConfig = SearchConfig()) -> list[list[int]]:
    """Indices grouped by connected components of "cosine >= ``min_cosine``": only groups of two or more, each sorted,
    ordered by first index (as curation.near_dups.groups_by_hash). Exact below ``config.exact_below`` vectors;
    above, pairs are found within each vector's ``probes`` nearest k-means clusters."""
    if not -1.0 <= float(min_cosine) <= 1.0:
        raise ValueError(f"min_cosine is a cosine, -1..1, not {min_cosine!r}")
    v = _check(vectors)
    n = len(v)
    if n < 2:
        return []
    a_parts, b_parts = [], []
    for rows, cols in _candidate_blocks(v, config):
        sims = v[rows] @ v[cols].T
        i, j = np.nonzero(sims >= min_cosine)
        a, b = rows[i], cols[j]
        keep = a != b  # a pair may come in either direction; only connectivity matters
        a_parts.append(a[keep])
        b_parts.append(b[keep])
    a = np.concatenate(a_parts) if a_parts else np.zeros(0, np.int64)
    b = np.concatenate(b_parts) if b_parts else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    order = np.argsort(label, kind="stable")
    cut = np.flatnonzero(np.diff(label[order])) + 1
    groups = [g.tolist() for g in np.split(order, cut) if len(g) >= 2]
    groups.sort(key=lambda g: g[0])
    return groups


def uniqueness(vectors: np.ndarray, neighbours: int = 5, config: SearchConfig = SearchConfig()) -> np.ndarray:
    """Per vector, 1 - the mean cosine with its ``neighbours`` nearest other vectors (searched as groups_by_cosine
    searches: exact for small sets, within the probed clusters above): near 0 for a photo with copies, larger for
    one unlike the rest. NaN where there is no other vector."""
    v = _check(vectors)
    n = len(v)
    out = np.full(n, np.nan, dtype=np.float64)
    if n < 2:
        return out
    m = max(1, min(int(neighbours), n - 1))
    best = np.full((n, m), -np.inf, dtype=np.float32)
    for rows, cols in _candidate_blocks(v, config):
        sims = v[rows] @ v[cols].T
        sims[rows[:, None] == cols[None, :]] = -np.inf  # not itself
        take = min(m, sims.shape[1])
        top = -np.partition(-sims, take - 1, axis=1)[:, :take] if take < sims.shape[1] else sims
        merged = np.concatenate([best[rows], top], axis=1)
        best[rows] = -np.partition(-merged, m - 1, axis=1)[:, :m]
    found = np.isfinite(best)
    counts = found.sum(axis=1)
    sums = np.where(found, best, 0).sum(axis=1)
    ok = counts > 0
    out[ok] = 1.0 - sums[ok] / counts[ok]
    return out
