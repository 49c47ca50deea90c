"""Held-out splits that near-duplicate photos do not cross.

Training holds products out for evaluation by a hash of the product (trainer.benchmarks.is_held_out). Two
products that share a photo, or near-duplicate photos (the same shoe listed under two ids, a customer's photo
attached to two complaints), would then land on both sides by chance, and "evaluated on products unseen in
training" would not be true. Here products are tied together through the near-duplicate groups their samples'
images are in (connected components over products and groups), and every sample of a component is split by
one key: the component's smallest product. A product tied to no other keeps its own key, so a store without
near-duplicates splits exactly as before.
"""
from __future__ import annotations

from typing import Iterable


class _Components:
    """Union-find over hashable nodes; each component's representative is its smallest product key."""

    def __init__(self):
        self.parent: dict[tuple, tuple] = {}

    def find(self, node: tuple) -> tuple:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: tuple, b: tuple) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # products ("p", name) sort before groups ("q", n); the smaller becomes the root, so a component's
            # root is its smallest product as soon as it holds one
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo


def split_keys(samples: Iterable[tuple[str, str, Iterable[int]]]) -> dict[str, str]:
    """``samples``: (sample_id, product, the near-duplicate groups of two or more its images are in). Returns the
    key each sample's side of the split is decided by: its product, or the smallest product of the products its
    groups tie it to. Samples of products in no group map to their own product."""
    samples = [(s, str(p), list(g)) for s, p, g in samples]
    found = _Components()
    for _, product, groups in samples:
        node = ("p", product)
        found.find(node)
        for g in groups:
            found.union(node, ("q", int(g)))
    return {sample_id: found.find(("p", product))[1] for sample_id, product, _ in samples}


def crossings(sides: dict[str, bool], groups: dict[str, Iterable[int]]) -> dict[int, dict[str, list[str]]]:
    """The groups with samples on both sides: ``sides`` maps a sample to True when held out, ``groups`` a sample
    to its near-duplicate groups. Returns {group: {"held_out": [sample ids], "training": [sample ids]}} for each
    group that crosses, sample ids sorted."""
    by_group: dict[int, dict[str, list[str]]] = {}
    for sample_id, gs in groups.items():
        if sample_id not in sides:
            continue
        for g in gs:
            by_group.setdefault(int(g), {"held_out": [], "training": []})["held_out" if sides[sample_id] else "training"].append(sample_id)
    return {g: {k: sorted(v) for k, v in parts.items()} for g, parts in sorted(by_group.items()) if parts["held_out"] and parts["training"]}
