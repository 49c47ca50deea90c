"""A 2-D map of image embeddings for the web app: PCA, or PCA then t-SNE on a sample with the rest placed among their
nearest sampled neighbours (t-SNE has no transform for new points, and its cost grows faster than linearly, so a
million images are not fitted at once)."""
from __future__ import annotations

import numpy as np


def pca(vectors: np.ndarray, dims: int) -> np.ndarray:
    """The vectors' first ``dims`` principal components (centred; SVD of the covariance: cheap for any n)."""
    v = np.asarray(vectors, dtype=np.float64)
    if len(v) == 0:
        return np.zeros((0, dims))
    centred = v - v.mean(axis=0)
    cov = centred.T @ centred / max(1, len(v) - 1)
    values, axes = np.linalg.eigh(cov)
    top = axes[:, np.argsort(values)[::-1][:dims]]
    # a sign fixed by the largest coordinate, so the same data always draws the same way round
    top *= np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(top.shape[1])])
    out = centred @ top
    if out.shape[1] < dims:
        out = np.pad(out, ((0, 0), (0, dims - out.shape[1])))
    return out


def place_by_neighbours(reduced: np.ndarray, sample: np.ndarray, positions: np.ndarray, k: int = 5, block: int = 4096) -> np.ndarray:
    """2-D positions for every row of ``reduced``: the sampled rows keep theirs, the others take the
    similarity-weighted mean of their ``k`` nearest sampled rows' positions (cosine in the reduced space)."""
    unit = reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    ref = unit[sample]
    out = np.empty((len(reduced), 2))
    k = min(k, len(sample))
    for start in range(0, len(reduced), block):
        sims = unit[start:start + block] @ ref.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(sample) else np.tile(np.arange(len(sample)), (len(sims), 1))
        w = np.maximum(np.take_along_axis(sims, top, axis=1), 0) + 1e-6
        out[start:start + block] = (w[:, :, None] * positions[top]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    out[sample] = positions
    return out


def project(vectors: np.ndarray, *, method: str = "tsne", sample_size: int = 10_000, seed: int = 0) -> np.ndarray:
    """n x 2 map coordinates of the vectors. ``pca``: the first two components. ``tsne``: PCA to 50 dimensions, t-SNE
    (scikit-learn, Barnes-Hut) on at most ``sample_size`` rows, the others placed by :func:`place_by_neighbours`."""
    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    if method not in ("tsne", "pca"):
        raise ValueError(f"method is tsne or pca, not {method!r}")
    if n == 0:
        return np.zeros((0, 2))
    if method == "pca" or n < 5:
        return pca(v, 2)
    from sklearn.manifold import TSNE

    reduced = pca(v, min(50, v.shape[1]))
    rng = np.random.default_rng(seed)
    sample = np.arange(n) if n <= sample_size else np.sort(rng.choice(n, sample_size, replace=False))
    perplexity = float(min(30, max(2, (len(sample) - 1) // 3)))
    fitted = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1).fit_transform(reduced[sample])
    return fitted if len(sample) == n else place_by_neighbours(reduced, sample, fitted)
