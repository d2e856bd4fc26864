"""Exact and near-duplicate images, found before the split so that copies of one image never end up on both
sides of it (pure functions of decoded pixels; ``hash_chunk`` is per-chunk work).

Near duplicates are pairs whose perceptual hashes (``imagehash.phash``, 64 bits) differ in at most
``max_distance`` bits; exact duplicates are pairs with identical decoded pixels. A flat image (no structure:
each channel's standard deviation over the image below ``FLAT_STD``) has an uninformative perceptual hash, so it matches exactly only.
"""
from __future__ import annotations

import hashlib

import numpy as np

PHASH_METHOD = "imagehash.phash (64-bit DCT hash) of the decoded image"
FLAT_STD = 2.0  # grey levels


def hash_chunk(images: np.ndarray) -> np.ndarray:
    """(perceptual hash, digest of the exact pixels, 1 if flat) per image of a chunk: an (n, 3) uint64 array."""
    import imagehash
    from PIL import Image

    phash = np.zeros(len(images), dtype=np.uint64)
    exact = np.zeros(len(images), dtype=np.uint64)
    for i, img in enumerate(images):
        bits = imagehash.phash(Image.fromarray(np.ascontiguousarray(img))).hash.flatten()
        phash[i] = np.packbits(bits).view(">u8")[0]
        exact[i] = np.frombuffer(hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=8).digest(),
                                 dtype=np.uint64)[0]
    flat = np.array([is_flat(img) for img in images], dtype=np.uint64)
    return np.stack([phash, exact, flat], 1)


_LEVELS = np.arange(256, dtype=np.int64)


def is_flat(img: np.ndarray) -> bool:
    """Whether every channel's standard deviation over ``img`` (H, W, C) is below ``FLAT_STD``. For 8-bit images
    it is computed exactly in integers from each channel's histogram (n * sum(x^2) - sum(x)^2 < FLAT_STD^2 * n^2),
    several times faster than a float64 standard deviation over every pixel."""
    pixels = img.reshape(-1, img.shape[-1])
    if pixels.dtype != np.uint8:
        return float(np.std(pixels, axis=0).max()) < FLAT_STD
    n = len(pixels)
    for c in range(pixels.shape[1]):
        hist = np.bincount(pixels[:, c], minlength=256)
        total, squares = int(hist @ _LEVELS), int(hist @ (_LEVELS * _LEVELS))
        if n * squares - total * total >= FLAT_STD ** 2 * n * n:
            return False
    return True


def duplicate_pairs(phash: np.ndarray, exact: np.ndarray, max_distance: int,
                    flat: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (i, j) with i < j, whether each pair is an exact duplicate) of images whose perceptual hashes are
    at most ``max_distance`` bits apart (neither of them ``flat``) or whose pixels are identical.

    Candidates come from multi-index hashing: two hashes at most d bits apart agree exactly on at least one of
    d + 1 disjoint bands of their bits, so only images sharing a band value are compared."""
    phash, exact = np.asarray(phash, dtype=np.uint64), np.asarray(exact, dtype=np.uint64)
    structured = ~np.asarray(flat, dtype=bool) if flat is not None else np.ones(len(phash), dtype=bool)
    candidates = [_same_value_pairs(exact)]
    idx = np.flatnonzero(structured)
    bands = max_distance + 1
    if bands <= 16:
        edges = np.linspace(0, 64, bands + 1).astype(int)
        for lo, hi in zip(edges[:-1], edges[1:]):
            band = (phash[idx] >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
            pairs = _same_value_pairs(band)
            candidates.append(idx[pairs] if len(pairs) else pairs)
    else:  # too many narrow bands to help: compare every structured pair
        i, j = np.triu_indices(len(idx), 1)
        candidates.append(np.stack([idx[i], idx[j]], 1))
    pairs = np.unique(np.concatenate(candidates).reshape(-1, 2), axis=0)
    if not len(pairs):
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=bool)
    is_exact = exact[pairs[:, 0]] == exact[pairs[:, 1]]
    near = (np.bitwise_count(phash[pairs[:, 0]] ^ phash[pairs[:, 1]]) <= max_distance) \
        & structured[pairs[:, 0]] & structured[pairs[:, 1]]
    keep = is_exact | near
    return pairs[keep].astype(np.int64), is_exact[keep]


def _same_value_pairs(values: np.ndarray) -> np.ndarray:
    """Every (i, j), i < j, of positions with equal ``values``."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    out = []
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
        members = np.sort(order[start:start + size])
        i, j = np.triu_indices(size, 1)
        out.append(np.stack([members[i], members[j]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def merged_groups(n: int, pairs: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """A group label per image: connected components of "same lesion" (``groups``) and "duplicate" (``pairs``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = [pairs[:, 0]], [pairs[:, 1]]
    if groups is not None:
        _, first = np.unique(np.asarray(groups), return_inverse=True)
        anchor = np.full(first.max() + 1, -1)
        anchor[first[::-1]] = np.arange(n)[::-1]  # the first image of each lesion
        rows.append(np.arange(n))
        cols.append(anchor[first])
    r, c = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def crossing_pairs(pairs: np.ndarray, side: np.ndarray) -> np.ndarray:
    """The pairs whose two images lie on different sides (``side[i]``: 0 train, 1 validation, 2 test)."""
    if not len(pairs):
        return pairs
    return pairs[side[pairs[:, 0]] != side[pairs[:, 1]]]


def duplicate_group_count(n: int, pairs: np.ndarray) -> tuple[int, int]:
    """(groups of two or more duplicate images, images in them)."""
    if not len(pairs):
        return 0, 0
    labels = merged_groups(n, pairs, None)
    sizes = np.bincount(labels)
    return int((sizes > 1).sum()), int(sizes[sizes > 1].sum())
