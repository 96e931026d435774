"""Text -> fixed-size feature vector by hashed character n-grams (the hashing trick).

Every character n-gram (n = 1..n_max) of the lower-cased, whitespace-normalised text increments
bucket ``crc32(ngram) mod size``; the counts are L2-normalised. crc32 is stable across processes
(Python's ``hash`` is salted), so the same text always maps to the same vector.
"""
from __future__ import annotations

import zlib

import numpy as np


def text_features(text: str, size: int, ngram_max: int = 3) -> np.ndarray:
    normalised = " ".join(text.lower().split())
    vec = np.zeros(size, dtype=np.float64)
    for n in range(1, ngram_max + 1):
        for i in range(len(normalised) - n + 1):
            vec[zlib.crc32(normalised[i : i + n].encode("utf-8", errors="surrogatepass")) % size] += 1.0
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec
