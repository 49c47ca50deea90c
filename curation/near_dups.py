"""Near-duplicate images by perceptual hash (issue 28, part 1): the pure core, no store and no jobs.

A near-duplicate is the same photo resized, re-encoded, cropped by a few per cent, re-toned or watermarked.
Each image gets a 64-bit perceptual hash (:func:`phash`, DCT-based, the default; :func:`dhash`, row
gradients, kept so bench/near_dups.py can compare the two); two images whose hashes differ in at most
``max_distance`` bits are a pair, and :func:`groups_by_hash` returns the connected components of the pairs.

Grouping never compares all pairs. Multi-index hashing: cut the hash into ``m`` disjoint blocks of bits.
If two hashes differ in at most ``d`` bits, the ``m`` per-block differences add up to at most ``d``, so one
block differs in at most ``floor(d / m)`` bits (pigeonhole). With ``m = d + 1`` that is "one block is
equal": bucket by (block, value) and compare only inside buckets. That is cheap while buckets are small,
i.e. while the blocks are wide enough for the number of hashes; at a million hashes and ``d = 12`` the 13
blocks are ~5 bits wide and each bucket holds ~30,000 hashes, which is all-pairs again. So the number of
blocks is chosen per input by a cost estimate (:func:`index_plan`): fewer, wider blocks (about log2 n bits),
each searched within a small radius (:func:`_radii`: a tighter pigeonhole than floor(d / m) everywhere) by
probing the values with those bits flipped. Either way every candidate pair is checked on the full 64 bits,
so the result is exact (tests/test_near_dups.py compares it with all pairs on every search path).

Cost: exact search gets dearer as d/64 grows, and superlinear in n, because wider blocks need larger radii.
bench/near_dups.py measures it and the accuracy of both hashes on real photos.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.fft import dctn
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_BITS = 64

# bench/near_dups.py, 1,445 real product photos and 1,800 near-duplicates made of 300 of them (seed 0): phash
# within 12 bits finds 97.7% of the (original, variant) pairs, and 98.4% of the pairs it reports are right;
# 10 bits misses too many crops (94.5%). Beware scale: 1,000,000 uniformly random 64-bit hashes already hold
# ~114,000 pairs within 12 bits by chance (~5,000 within 10); real hashes, less uniform, hold more. Measure before raising it.
DEFAULT_MAX_DISTANCE = 12


class NearDupError(ValueError):
    """An image that cannot be hashed; ``code`` is for an error row, the message names the file and the problem."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HashConfig:
    method: str = "phash"  # or "dhash": on the bench's photos about as good, a little better on crops
    # Same limit as curation/images.py's ImageLimits: a header declaring more pixels is refused before decoding.
    max_pixels: int = 100_000_000
    # A JPEG is decoded at 1/2, 1/4 or 1/8 scale while it stays at least this big: the hash reads a 32x32
    # thumbnail, and a 12 Mpx photo hashes in 14 ms instead of 54 (every byte is still read, so a truncated
    # file is still found). Hashes made this way can differ by a few bits from phash(Image.open(path)) on
    # near-flat images: compare hashes made by the same function.
    decode_at_least: int = 256


@dataclass(frozen=True)
class GroupConfig:
    # Below this many distinct hashes, all pairs in numpy (a few ms) is quicker than building any index.
    brute_force_below: int = 1500
    # A bucket holding more distinct hashes than this is grouped on its remaining bits by the same method
    # (recursively) instead of comparing all its pairs: the guard for a degenerate block, e.g. many plain
    # white-background shots sharing one block value. Pairs across two such neighbouring buckets are still
    # checked one by one, in bounded chunks: only degenerate data gets there.
    max_bucket: int = 1500
    # Candidate pairs checked per numpy pass (~40 bytes each): bounds memory whatever the bucket sizes.
    chunk_pairs: int = 1 << 22
    # Most bits flipped per block when probing neighbouring buckets: C(22, 4) = 7315 probes per block value.
    max_radius: int = 4
    # Edges kept before they are folded into one spanning star per component (only connectivity matters).
    max_edges: int = 8_000_000
    # Fix the number of blocks (tests and the bench exercise each search path); None: the cheapest by estimate.
    blocks: int | None = None


# ---- hashing ------------------------------------------------------------------------------------------------------------
def _grey(image: Image.Image) -> Image.Image:
    """One luminance channel ("L", or "F" for 16-bit and float images, which keep their precision) of the image as shown."""
    image = ImageOps.exif_transpose(image)  # a phone photo stored sideways with an Orientation tag hashes upright
    if image.mode == "P":  # palette: its transparency, if any, becomes an alpha channel
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    mode = image.mode
    if mode in ("L", "F"):
        return image
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        return image.convert("F")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        # What hides under a transparent pixel is arbitrary (often black): hash the image as shown on a white page.
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("L")
    if mode == "LAB":
        return image.getchannel("L")
    return image.convert("RGB").convert("L")  # RGB, CMYK (naive, no ICC profile), YCbCr, HSV, 1


def _to_int(bits: np.ndarray) -> int:
    """64 booleans, first = most significant bit."""
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash: the signs, against their median, of the 8x8 lowest spatial frequencies of a
    32x32 greyscale thumbnail. Low frequencies survive resizing, re-encoding and tone changes; comparing with the
    median (not zero) makes the hash independent of contrast, and leaving out the DC term (overall brightness,
    far above every other coefficient) keeps the median about the image's structure. Its own bit is then almost
    always 1, and 31 of the other 63 lie above their median: every hash has 32 bits set, so two hashes always
    differ in an even number of bits (thresholds 2k and 2k+1 are the same). On a near-flat image (a product on
    white) several coefficients sit at the median and their bits are noise."""
    thumb = np.asarray(_grey(image).resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(thumb, type=2, norm="ortho")[:8, :8].ravel()
    return _to_int(low > np.median(low[1:]))


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: for each of 8 rows of a 9x8 greyscale thumbnail, is each pixel brighter than its left neighbour."""
    thumb = np.asarray(_grey(image).resize((9, 8), Image.Resampling.LANCZOS), dtype=np.float64)
    return _to_int((thumb[:, 1:] > thumb[:, :-1]).ravel())


METHODS = {"phash": phash, "dhash": dhash}


def hash_bytes(data: bytes, config: HashConfig = HashConfig(), *, name: str = "image") -> int:
    """The hash of encoded image bytes; :class:`NearDupError` when they cannot be hashed (``name`` goes in its message)."""
    if not data:
        raise NearDupError("empty_file", f"{name}: the file is empty")
    return _hash_stream(io.BytesIO(data), name, config)


def hash_file(path: str | os.PathLike, config: HashConfig = HashConfig()) -> int:
    """The hash of an image file. A missing, unreadable, corrupt, truncated or oversized (decompression bomb) file
    raises :class:`NearDupError`, never another exception, so a caller can record an error row and go on."""
    name = os.fspath(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise NearDupError("missing_file", f"{name!r}: no such file") from None
    except OSError as exc:
        raise NearDupError("unreadable_file", f"{name!r}: cannot read the file: {exc.strerror or exc}") from None
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise NearDupError("empty_file", f"{name!r}: the file is empty")
        return _hash_stream(f, repr(name), config)


# Leading bytes of the formats a catalogue holds: bytes that start like one but do not open are a corrupt file
# of that format, not "not an image".
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"RIFF", "WEBP"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _claimed_format(fp) -> str | None:
    try:
        fp.seek(0)
        head = fp.read(16)
    except (OSError, ValueError):
        return None
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic) and (fmt != "WEBP" or head[8:12] == b"WEBP")), None)


def _hash_stream(fp, name: str, config: HashConfig) -> int:
    method = METHODS.get(config.method)
    if method is None:  # the caller's mistake, not the file's: a plain ValueError before anything is read
        raise ValueError(f"unknown hash method {config.method!r} (known: {', '.join(METHODS)})")
    try:
        with warnings.catch_warnings():
            # PIL warns above its own global limit; ours is the one applied, explicitly, just below
            # (and still applies where some other module set Image.MAX_IMAGE_PIXELS = None).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                width, height = im.size
                if width * height > config.max_pixels:
                    raise NearDupError(
                        "image_too_large",
                        f"{name}: decompression bomb refused: the header declares {width}x{height} = {width * height:,} pixels, "
                        f"over the limit of {config.max_pixels:,}",
                    )
                if im.format == "JPEG":
                    side = config.decode_at_least
                    im.draft("L", (side, side))  # "L": the decoder keeps only luma, which is what both hashes read
                im.load()  # decode everything now, so truncation is found here and not half-way through a hash
                return method(im)
    except NearDupError:
        raise
    except Image.DecompressionBombError as exc:  # over twice PIL's global limit: refused by Image.open itself
        raise NearDupError("image_too_large", f"{name}: decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        claimed = _claimed_format(fp)
        if claimed:
            raise NearDupError("corrupt_image", f"{name}: corrupt image: it begins like a {claimed} file but its header cannot be read") from None
        raise NearDupError("not_an_image", f"{name}: not an image (no known image format recognises its bytes)") from None
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise NearDupError("truncated_image", f"{name}: truncated image: {exc}") from None
        raise NearDupError("corrupt_image", f"{name}: corrupt image: {exc}") from None
    except Exception as exc:  # decoders fed hostile bytes raise all sorts (SyntaxError, struct.error, IndexError, ...)
        raise NearDupError("corrupt_image", f"{name}: corrupt image: {exc.__class__.__name__}: {exc}") from None


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


# ---- grouping -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexPlan:
    """How :func:`groups_by_hash` searches: the ``widths`` of the blocks (empty: all pairs) and, per block, the most
    bits in which two hashes' values of that block may differ to be probed as a candidate pair (``radii``)."""

    widths: tuple[int, ...]
    radii: tuple[int, ...]
    estimated_cost: float

    def describe(self) -> str:
        if not self.widths:
            return "all pairs" if self.estimated_cost else "none"
        return f"{len(self.widths)} block{'s' if len(self.widths) > 1 else ''} of {'/'.join(map(str, self.widths))} bits, radii {'/'.join(map(str, self.radii))}"


# Relative costs (ns, rough calibration from timings on one core of the development machine, numpy 2.3; only ratios matter):
# one probe of a block value by direct table (xor, look-up, test) or, for blocks over 24 bits, by binary search;
# one candidate pair across buckets (gather, xor, popcount, test) and one inside a bucket (cheaper: no expansion);
# one hash sorted per block; one pair of the all-pairs path (dense row blocks); the fixed numpy calls per mask.
_COST_PROBE, _COST_SEARCH, _COST_CROSS, _COST_WITHIN = 3.0, 60.0, 12.0, 5.0
_COST_SORT, _COST_ALL_PAIRS, _COST_MASK = 150.0, 1.5, 30_000.0


def _widths(nbits: int, m: int) -> tuple[int, ...]:
    base, extra = divmod(nbits, m)
    return tuple(base + 1 if i < extra else base for i in range(m))


def _radii(m: int, d: int) -> tuple[int, ...]:
    """Per-block radii that cannot miss a pair within ``d`` bits. With d = m*r + a (0 <= a < m): if each of the
    first a+1 blocks differed in more than r bits and each other block in more than r-1, the pair would differ in
    at least (a+1)(r+1) + (m-a-1)r = d+1 bits. So the first a+1 blocks are searched within r, the others within
    r-1: the plain pigeonhole's r everywhere probes up to 2-3x more. With m = d+1 every radius is 0 (equal blocks)."""
    r, a = divmod(d, m)
    return tuple(r if j <= a else r - 1 for j in range(m))


def index_plan(n: int, max_distance: int, config: GroupConfig = GroupConfig(), nbits: int = HASH_BITS) -> IndexPlan:
    """The cheapest exact search for ``n`` distinct ``nbits``-bit hashes, by an estimate that takes them as
    uniformly random (real hashes are skewed: :class:`GroupConfig.max_bucket` guards the worst of that)."""
    pairs = n * (n - 1) / 2
    best = IndexPlan((), (), pairs * _COST_ALL_PAIRS if max_distance else 0.0)  # distinct hashes: none at distance 0
    if n < config.brute_force_below or not max_distance:
        return best
    for m in range(1, min(max_distance + 1, nbits) + 1):
        radii = _radii(m, max_distance)
        if (radii[0] > config.max_radius and config.blocks is None) or config.blocks not in (None, m):
            continue
        for widths in dict.fromkeys((_widths(nbits, m), _widths(nbits, m)[::-1])):  # the larger radii on the wider or the narrower blocks
            cost = 0.0
            for b, radius in zip(widths, radii):
                volume = sum(math.comb(b, i) for i in range(radius + 1))  # block values within the radius of one value
                buckets = 2.0**b * -math.expm1(-n / 2.0**b)  # expected non-empty buckets
                # each unordered pair of neighbouring buckets is probed once, from its smaller value
                probe = _COST_PROBE if b <= 24 else _COST_SEARCH
                cost += (buckets * probe / 2 + _COST_MASK) * (volume - 1) + pairs / 2.0**b * (_COST_WITHIN + (volume - 1) * _COST_CROSS) + n * _COST_SORT
            if cost < best.estimated_cost or (config.blocks == m and not best.widths):
                best = IndexPlan(widths, radii, cost)
    return best


def _masks(width: int, radius: int) -> list[tuple[int, np.ndarray]]:
    """Every non-zero value of ``width`` bits with at most ``radius`` bits set, grouped by its highest bit."""
    by_top: dict[int, list[int]] = {}
    for k in range(1, radius + 1):
        for bits in combinations(range(width), k):
            by_top.setdefault(bits[-1], []).append(sum(1 << i for i in bits))
    return [(top, np.array(masks, dtype=np.uint64)) for top, masks in sorted(by_top.items())]


class _Edges:
    """Verified pairs of distinct-hash ids; folded into spanning stars when they grow (connectivity is all we keep)."""

    def __init__(self, n: int, max_edges: int):
        self.n, self.limit = n, max_edges
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.count = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if len(a):
            self.a.append(a)
            self.b.append(b)
            self.count += len(a)
            if self.count > self.limit:
                labels = self.labels()
                first = np.full(int(labels.max()) + 1, self.n, dtype=np.int64)
                np.minimum.at(first, labels, np.arange(self.n))  # smallest id of each component: the star's centre
                node = np.flatnonzero(first[labels] != np.arange(self.n))
                self.a, self.b, self.count = [first[labels[node]]], [node], len(node)
                self.limit = max(self.limit, 2 * self.count)  # stars alone can exceed it: fold again only after as many new edges

    def labels(self) -> np.ndarray:
        if not self.count:
            return np.arange(self.n)
        a, b = np.concatenate(self.a), np.concatenate(self.b)
        graph = coo_matrix((np.ones(len(a), dtype=np.int32), (a, b)), shape=(self.n, self.n))  # int32: duplicate edges sum
        return connected_components(graph, directed=False)[1]


class _Search:
    def __init__(self, max_distance: int, config: GroupConfig, edges: _Edges):
        self.d, self.config, self.edges = max_distance, config, edges

    def run(self, h: np.ndarray, ids: np.ndarray, nbits: int) -> None:
        """Add every pair of ``h`` (distinct values of ``nbits`` bits, ids ``ids``) within the distance, or enough of them
        to connect the same components."""
        n = len(h)
        if n < 2:
            return
        if self.d == 0:  # the hashes are distinct: no pair at distance 0
            return
        if self.d >= nbits:  # every pair is within the distance: a star connects them all
            self.edges.add(np.repeat(ids[:1], n - 1), ids[1:])
            return
        plan = index_plan(n, self.d, self.config, nbits)
        if not plan.widths:
            self._all_pairs(h, ids)
            return
        lo = 0
        for width, radius in zip(plan.widths, plan.radii):
            self._block(h, ids, nbits, lo, width, radius)
            lo += width

    def _check(self, sh: np.ndarray, sid: np.ndarray, i: np.ndarray, k: np.ndarray) -> None:
        near = np.bitwise_count(sh[i] ^ sh[k]) <= self.d
        self.edges.add(sid[i[near]], sid[k[near]])

    def _all_pairs(self, h: np.ndarray, ids: np.ndarray) -> None:
        n = len(h)
        rows = max(1, self.config.chunk_pairs // n)
        for r0 in range(0, n - 1, rows):
            r1 = min(n, r0 + rows)
            dist = np.bitwise_count(h[r0:r1, None] ^ h[None, r0:])
            dist[np.tril_indices(r1 - r0, 0, dist.shape[1])] = 255  # the pair (i, k) once, k > i
            i, k = np.nonzero(dist <= self.d)
            self.edges.add(ids[r0 + i], ids[r0 + k])

    def _block(self, h: np.ndarray, ids: np.ndarray, nbits: int, lo: int, width: int, radius: int) -> None:
        n = len(h)
        value = (h >> np.uint64(lo)) & np.uint64((1 << width) - 1)
        order = np.argsort(value, kind="stable")
        sv, sh, sid = value[order], h[order], ids[order]
        start = np.flatnonzero(np.concatenate(([True], sv[1:] != sv[:-1])))  # buckets: runs of one block value
        count = np.diff(np.append(start, n))
        uv = sv[start]

        # Pairs inside a bucket: (p, p + step) for every position p whose bucket reaches that far. The active
        # positions shrink at each step, so this costs the number of pairs, not buckets x the largest bucket.
        small = (count >= 2) & (count <= self.config.max_bucket)
        if small.any():
            s, c = start[small], count[small]
            pos = np.repeat(s, c) + _ranks(c)
            end = np.repeat(s + c, c)
            step = 1
            while True:
                keep = pos + step < end
                pos, end = pos[keep], end[keep]
                if not len(pos):
                    break
                self._check(sh, sid, pos, pos + step)
                step += 1
        # A huge bucket: its hashes are equal on this block, so their distance is the distance on the other
        # bits. Search those (fewer bits, same distance) instead of comparing its pairs.
        for s, c in zip(start[count > self.config.max_bucket].tolist(), count[count > self.config.max_bucket].tolist()):
            self.run(_drop_bits(sh[s:s + c], lo, width, nbits), sid[s:s + c], nbits - width)

        if not radius or len(uv) < 2:
            return
        # Pairs across buckets whose values differ in 1..radius bits: each value probes value ^ mask. A mask's
        # highest bit is 0 in exactly one value of each such pair: probing from that one finds every pair once.
        # This loop is the cost of the whole search at large n (n/2 probes per mask), so it is kept to a few passes.
        first = sh[start]  # each bucket's first hash: the whole bucket when it holds one, as most do with wide blocks
        single = count == 1
        table = width <= 24  # a direct table (at most 64 MB) is several times quicker than a binary search per probe
        if table:
            uv = uv.astype(np.int64)
            where = np.full(1 << width, -1, dtype=np.int32)
            where[uv] = np.arange(len(uv), dtype=np.int32)
        for top, masks in _masks(width, radius):
            src = np.flatnonzero(((uv >> top) & 1) == 0)
            base, base_first, base_single = uv[src], first[src], single[src]
            for mask in masks.astype(uv.dtype).tolist():
                target = base ^ mask
                if table:
                    dst = where[target]
                    hit = np.flatnonzero(dst >= 0)
                else:
                    dst = np.minimum(np.searchsorted(uv, target), len(uv) - 1)
                    hit = np.flatnonzero(uv[dst] == target)
                if not len(hit):
                    continue
                b = dst[hit]
                one = base_single[hit] & single[b]
                near = np.flatnonzero(one & (np.bitwise_count(base_first[hit] ^ first[b]) <= self.d))
                if len(near):
                    self.edges.add(sid[start[src[hit[near]]]], sid[start[b[near]]])
                rest = np.flatnonzero(~one)
                if len(rest):
                    a, b = src[hit[rest]], b[rest]
                    self._cross(sh, sid, start[a], count[a], start[b], count[b])

    def _cross(self, sh, sid, sa: np.ndarray, ca: np.ndarray, sb: np.ndarray, cb: np.ndarray) -> None:
        """Check every pair (one hash of bucket a, one of bucket b) for the given bucket pairs."""
        single = (ca == 1) & (cb == 1)  # most buckets hold one hash when the blocks are wide: no expansion
        if single.any():
            self._check(sh, sid, sa[single], sb[single])
            if single.all():
                return
            sa, ca, sb, cb = sa[~single], ca[~single], sb[~single], cb[~single]
        size = ca * cb
        ends = np.cumsum(size)
        g0 = 0
        while g0 < len(size):  # whole bucket pairs per chunk, at least one (a huge pair is still cut below)
            done = ends[g0 - 1] if g0 else 0
            g1 = max(g0 + 1, int(np.searchsorted(ends, done + self.config.chunk_pairs, side="right")))
            sz = size[g0:g1]
            g = np.repeat(np.arange(g0, g1), sz)
            local = _ranks(sz)
            for c0 in range(0, len(g), self.config.chunk_pairs):
                gg, ll = g[c0:c0 + self.config.chunk_pairs], local[c0:c0 + self.config.chunk_pairs]
                self._check(sh, sid, sa[gg] + ll // cb[gg], sb[gg] + ll % cb[gg])
            g0 = g1


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each c in ``counts``, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def _drop_bits(h: np.ndarray, lo: int, width: int, nbits: int) -> np.ndarray:
    """``h`` without bits lo..lo+width-1, the bits above moved down: ``nbits - width`` bits remain."""
    low = h & np.uint64((1 << lo) - 1)
    if lo + width >= nbits:
        return low
    return low | ((h >> np.uint64(lo + width)) << np.uint64(lo))


def _as_hashes(hashes: Sequence[int]) -> np.ndarray:
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
        return hashes.ravel()
    try:
        return np.fromiter((int(x) for x in hashes), dtype=np.uint64, count=len(hashes))
    except OverflowError:
        raise ValueError("a hash is not a 64-bit unsigned integer (0 <= hash < 2**64)") from None


def groups_by_hash(hashes: Sequence[int], max_distance: int = DEFAULT_MAX_DISTANCE, config: GroupConfig = GroupConfig()) -> list[list[int]]:
    """Indices of ``hashes`` grouped by connected components of "at most ``max_distance`` differing bits": only groups
    of two or more, each in increasing order, groups ordered by their first index. A chain a-b-c is one group even
    where a and c are further apart. Exact (no pair is missed), without comparing all pairs."""
    if not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"max_distance must be a non-negative integer, not {max_distance!r}")
    h = _as_hashes(hashes)
    if len(h) < 2:
        return []
    # Equal hashes first: 10,000 copies of one photo are one node, linked in O(n), not 50 million pairs.
    distinct, inverse = np.unique(h, return_inverse=True)
    edges = _Edges(len(distinct), config.max_edges)
    _Search(max_distance, config, edges).run(distinct, np.arange(len(distinct)), HASH_BITS)
    label = edges.labels()[inverse.ravel()]
    order = np.argsort(label, kind="stable")  # by component, then by index
    cut = np.flatnonzero(np.diff(label[order])) + 1
    starts, ends = np.concatenate(([0], cut)), np.concatenate((cut, [len(order)]))
    big = np.flatnonzero(ends - starts >= 2)
    groups = [order[starts[g]:ends[g]].tolist() for g in big.tolist()]
    groups.sort(key=lambda group: group[0])
    return groups
