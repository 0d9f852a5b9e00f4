"""The segment ranking of the `Class,Segments` CSV and its per-class top-K with bounded memory.

The one ranking, used by `python -m yt8m.segments.inference` and `yt8m.beam_inference` alike:
higher score first; equal scores by video id (text order), then by start frame as a number (so
`vid:5` comes before `vid:10`). It depends on the segments alone, never on the order the files
were read in or on how a runner split the work, so every tool and every sharding writes the same
CSV.

`TopK` keeps the K best segments of one class: it buffers at most about 2K candidates and, when a
buffer passes that, cuts it back to its best K (one sort of 2K entries per K additions, so
O(log K) per segment). Two buffers merge (the Beam combiner's accumulators). Segments may carry
payload arrays that travel with them (the MOD candidate limit ranks by video score and keeps each
segment's fused score as payload).
"""
import numpy as np

import yt8m  # noqa: F401
from yt8m.core import errors


def rank(scores, videos, starts):
    """Indices of the segments (parallel arrays), best first, in the ranking above.

    `videos` are the video ids, or integers that sort like them (the local tool's positions in
    the sorted list of ids: 8 bytes a segment instead of a string).
    """
    return np.lexsort((np.asarray(starts, np.int64), np.asarray(videos),
                       -np.asarray(scores, np.float64)))


def check_top_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise errors.InvalidInputError(f"--segment_top_k must be a positive integer, got {k!r}")
    return int(k)


class TopK:
    """The K best (score, video, start) segments of one class seen so far."""

    def __init__(self, k, num_payloads=0):
        self.k = check_top_k(k)
        self.num_payloads = int(num_payloads)
        self._parts = []   # (scores float64, videos, starts int64, *payloads) arrays not yet cut
        self._size = 0

    def add(self, scores, videos, starts, *payloads):
        """Adds parallel arrays: score [N], video [N] (ids or sorted positions), start [N], and
        the `num_payloads` payload arrays [N] that travel with the segments."""
        scores = np.asarray(scores, np.float64)
        videos = np.asarray(videos)
        starts = np.asarray(starts, np.int64)
        payloads = tuple(np.asarray(payload) for payload in payloads)
        if len(payloads) != self.num_payloads:
            raise ValueError(f"{len(payloads)} payload arrays given; this TopK carries "
                             f"{self.num_payloads}")
        if (not scores.shape == videos.shape == starts.shape or scores.ndim != 1
                or any(payload.shape != scores.shape for payload in payloads)):
            raise ValueError(f"scores {scores.shape}, videos {videos.shape}, starts "
                             f"{starts.shape} and payloads {[p.shape for p in payloads]} must be "
                             "vectors of the same length")
        if not scores.size:
            return
        self._parts.append((scores, videos, starts) + payloads)
        self._size += scores.size
        if self._size > 2 * self.k:
            self._cut()

    def merge(self, other):
        """Adds every segment `other` holds (its best K at most)."""
        for part in other._parts:
            self.add(*part)

    def _cut(self):
        if len(self._parts) > 1:
            self._parts = [tuple(np.concatenate(arrays) for arrays in zip(*self._parts))]
        if self._parts:
            arrays = self._parts[0]
            best = rank(*arrays[:3])[:self.k]
            self._parts = [tuple(array[best] for array in arrays)]
            self._size = best.size

    def top(self):
        """(scores, videos, starts, *payloads) of the best K, best first (empty arrays when
        nothing came)."""
        self._cut()
        if not self._parts:
            return ((np.zeros(0, np.float64), np.zeros(0, np.int64), np.zeros(0, np.int64))
                    + tuple(np.zeros(0) for _ in range(self.num_payloads)))
        return self._parts[0]


class PerClassTopK:
    """A TopK for every class that received a segment."""

    def __init__(self, k, num_payloads=0):
        self.k = check_top_k(k)
        self.num_payloads = int(num_payloads)
        self._top = {}   # class -> TopK

    def add(self, classes, scores, videos, starts, *payloads):
        """Adds parallel arrays: class [N], score [N], video [N], start [N], *payloads [N]."""
        classes = np.asarray(classes, np.int64)
        arrays = [np.asarray(array) for array in (scores, videos, starts) + payloads]
        if any(array.shape != classes.shape for array in arrays):
            raise ValueError(f"classes {classes.shape}, scores, videos, starts and payloads "
                             f"{[array.shape for array in arrays]} must have the same shape")
        order = np.argsort(classes, kind="stable")
        classes, arrays = classes[order], [array[order] for array in arrays]
        boundaries = np.flatnonzero(np.diff(classes)) + 1
        for begin, end in zip(np.r_[0, boundaries], np.r_[boundaries, classes.size]):
            if begin < end:
                self._top.setdefault(int(classes[begin]), TopK(self.k, self.num_payloads)).add(
                    *(array[begin:end] for array in arrays))

    def classes(self):
        return sorted(self._top)

    def top(self, cls):
        """(scores, videos, starts, *payloads) of class `cls`, best first, at most K (empty if
        none came)."""
        return (self._top[cls] if cls in self._top else TopK(self.k, self.num_payloads)).top()
