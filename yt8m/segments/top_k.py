"""Per-class top-K of scored segments with bounded memory (partial sorts, not all scores kept).

A segment is identified by (video number, start): video numbers are given in reading order, so
the int64 key `video_number * KEY_STRIDE + start` orders ties by the video read first, then the
earlier segment. Each class buffers at most about 2K candidates: when a buffer passes that, it
is cut back to its best K (one sort of 2K entries per K additions, so O(log K) per segment).
"""
import numpy as np

import yt8m  # noqa: F401

KEY_STRIDE = 1 << 32  # > any start frame


def segment_keys(video_numbers, starts):
    return np.asarray(video_numbers, np.int64) * KEY_STRIDE + np.asarray(starts, np.int64)


def split_keys(keys):
    keys = np.asarray(keys, np.int64)
    return keys // KEY_STRIDE, keys % KEY_STRIDE


def rank(scores, keys):
    """Order of (scores, keys): higher score first, ties by the smaller key."""
    return np.lexsort((keys, -np.asarray(scores, np.float64)))


class PerClassTopK:
    """Keeps, for every class, the K best (score, segment key) pairs seen so far."""

    def __init__(self, k):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"--segment_top_k must be a positive integer, got {k!r}")
        self.k = int(k)
        self._limit = 2 * self.k
        self._scores = {}   # class -> list of float64 arrays
        self._keys = {}     # class -> list of int64 arrays
        self._sizes = {}

    def add(self, classes, scores, keys):
        """Adds parallel arrays: class [N], score [N], segment key [N]."""
        classes = np.asarray(classes, np.int64)
        scores = np.asarray(scores, np.float64)
        keys = np.asarray(keys, np.int64)
        if not classes.shape == scores.shape == keys.shape:
            raise ValueError(f"classes {classes.shape}, scores {scores.shape} and keys "
                             f"{keys.shape} must have the same shape")
        if not classes.size:
            return
        order = np.argsort(classes, kind="stable")
        classes, scores, keys = classes[order], scores[order], keys[order]
        boundaries = np.flatnonzero(np.diff(classes)) + 1
        for begin, end in zip(np.r_[0, boundaries], np.r_[boundaries, classes.size]):
            cls = int(classes[begin])
            self._scores.setdefault(cls, []).append(scores[begin:end])
            self._keys.setdefault(cls, []).append(keys[begin:end])
            self._sizes[cls] = self._sizes.get(cls, 0) + (end - begin)
            if self._sizes[cls] > self._limit:
                self._cut(cls)

    def _cut(self, cls):
        scores = np.concatenate(self._scores[cls])
        keys = np.concatenate(self._keys[cls])
        best = rank(scores, keys)[:self.k]
        self._scores[cls], self._keys[cls] = [scores[best]], [keys[best]]
        self._sizes[cls] = best.size

    def classes(self):
        return sorted(self._scores)

    def top(self, cls):
        """(scores, keys) of class `cls`, best first, at most K (empty arrays for a new class)."""
        if cls not in self._scores:
            return np.zeros(0, np.float64), np.zeros(0, np.int64)
        self._cut(cls)
        return self._scores[cls][0], self._keys[cls][0]
