"""YouTube-8M evaluation metrics (SPEC section 2): GAP, MAP, Hit@1, PERR and the 2019 segment MAP@K.

Everything is numpy and exact. The streaming `EvaluationMetrics` keeps, for every video seen, its
top-k (class, score, relevant) triplets and the per-class positive counts; GAP and MAP are computed
from those at `get()` time with the same code the one-shot functions use, so accumulating a data set
batch by batch gives exactly the one-shot value.

Conventions shared by every metric here:
- A label counts as positive when it is > 0 (labels are multi-hot 0/1; any positive weight is 1).
- A video's top-k classes are chosen by descending score, ties broken by the lower class index
  (so the choice never depends on how the data set was split into batches).
- Ties in a ranked list: the scores of a block of equal scores are not ordered, so every positive
  inside the block gets the precision measured at the end of the block (the usual tie-aware AP,
  as in scikit-learn). The result does not depend on the order in which tied items arrived.
"""
import collections

import yt8m  # noqa: F401  (project convention: yt8m before any TensorFlow user)
import numpy as np

DEFAULT_TOP_K = 20
SEGMENT_MAP_K = 100000


# ----------------------------------------------------------------------------- input checks

def _check_top_k(top_k):
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    return int(top_k)


def _as_batch(predictions, labels, num_classes=None):
    """Validates a (predictions, labels) batch; returns float64 scores and boolean positives."""
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be 2-D [videos, classes], got shape {predictions.shape}")
    if labels.shape != predictions.shape:
        raise ValueError(f"labels shape {labels.shape} differs from predictions shape "
                         f"{predictions.shape}")
    if num_classes is not None and predictions.shape[1] != num_classes:
        raise ValueError(f"predictions have {predictions.shape[1]} classes, the metrics were "
                         f"created for num_classes={num_classes}")
    if np.isnan(predictions).any():
        raise ValueError("predictions contain NaN")
    return predictions, labels > 0


# ----------------------------------------------------------------------------- ranking helpers

def top_k_indices(predictions, k):
    """Indices [B, min(k, V)] of each row's k highest scores; ties go to the lower class index.

    The order of the indices inside a row is unspecified (callers that need an order sort them).
    """
    predictions = np.asarray(predictions)
    num_classes = predictions.shape[1]
    k = min(k, num_classes)
    if k == num_classes:
        return np.broadcast_to(np.arange(num_classes), predictions.shape).copy()
    # argpartition is O(V) a row but picks arbitrarily among scores tied with the k-th largest;
    # rows with such a tie (rare with float scores) are redone with a stable full sort.
    candidates = np.argpartition(-predictions, k - 1, axis=1)[:, :k]
    kth_score = np.take_along_axis(predictions, candidates, axis=1).min(axis=1)
    tied_rows = np.flatnonzero((predictions >= kth_score[:, None]).sum(axis=1) > k)
    if tied_rows.size:
        candidates[tied_rows] = np.argsort(-predictions[tied_rows], axis=1, kind="stable")[:, :k]
    return candidates


def _sum_tie_aware_precisions(group_ids, scores, relevant):
    """For items split into groups (e.g. classes), ranks each group by descending score and returns,
    per group id, sum over the group's relevant items of precision@(end of the item's tie block).

    Divide a group's sum by its number of positives to get its average precision.
    Returns (group ids present, sorted ascending; their sums).
    """
    if scores.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    order = np.lexsort((-scores, group_ids))  # by group, then descending score
    groups, scores, relevant = group_ids[order], scores[order], relevant[order].astype(np.int64)
    n = scores.size
    new_group = np.r_[True, groups[1:] != groups[:-1]]
    group_start = np.flatnonzero(new_group)
    group_index = np.cumsum(new_group) - 1
    # Rank (1-based) and cumulative positives inside each group.
    ranks = np.arange(n) - group_start[group_index] + 1
    cum_relevant = np.cumsum(relevant)
    before_group = np.r_[0, cum_relevant[group_start[1:] - 1]]
    cum_relevant_in_group = cum_relevant - before_group[group_index]
    # A tie block ends where the score or the group changes; every item of a block is credited
    # with the precision at the block's last item.
    block_end = np.r_[(scores[1:] != scores[:-1]) | (groups[1:] != groups[:-1]), True]
    block_index = np.cumsum(np.r_[0, block_end[:-1]])
    last_of_block = np.flatnonzero(block_end)[block_index]
    precision_at_block_end = cum_relevant_in_group[last_of_block] / ranks[last_of_block]
    sums = np.bincount(group_index, weights=relevant * precision_at_block_end,
                       minlength=group_start.size)
    return groups[group_start], sums


def average_precision(scores, relevant, num_positives=None):
    """AP of one ranked list: (1/P) * sum_i precision@i * rel_i over the list ranked by score.

    Args:
      scores: 1-D scores.
      relevant: 1-D booleans (or values > 0), same length.
      num_positives: P; defaults to the number of relevant items in the list. Pass the true total
        when the list holds only part of the positives (they then count as never retrieved).
    Returns:
      The AP; 0.0 when P == 0. Ties are handled tie-aware (see the module docstring).
    """
    scores = np.asarray(scores, np.float64).ravel()
    relevant = np.asarray(relevant).ravel() > 0
    if scores.shape != relevant.shape:
        raise ValueError(f"scores ({scores.size}) and relevant ({relevant.size}) differ in length")
    if num_positives is None:
        num_positives = int(relevant.sum())
    if num_positives <= 0:
        return 0.0
    _, sums = _sum_tie_aware_precisions(np.zeros(scores.size, np.int64), scores, relevant)
    return float(sums.sum() / num_positives)


# ----------------------------------------------------------------------------- top-k triplets

class _TopKTriplets:
    """Per video top-k (class, score, relevant) triplets plus per-class positive counts."""

    def __init__(self, num_classes, top_k):
        self.num_classes = num_classes
        self.top_k = top_k
        self.clear()

    def clear(self):
        self._classes, self._scores, self._relevant = [], [], []
        self.positives_per_class = np.zeros(self.num_classes, np.int64)

    def add(self, predictions, positives):
        indices = top_k_indices(predictions, self.top_k)
        self._classes.append(indices.ravel().astype(np.int64))
        self._scores.append(np.take_along_axis(predictions, indices, axis=1).ravel())
        self._relevant.append(np.take_along_axis(positives, indices, axis=1).ravel())
        self.positives_per_class += positives.sum(axis=0)

    def extend(self, other):
        """Appends another accumulator's triplets and positive counts (same classes and top_k)."""
        self._classes.extend(other._classes)
        self._scores.extend(other._scores)
        self._relevant.extend(other._relevant)
        self.positives_per_class += other.positives_per_class

    def arrays(self):
        if not self._classes:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
        # Keep one array each so later calls do not concatenate again.
        self._classes = [np.concatenate(self._classes)]
        self._scores = [np.concatenate(self._scores)]
        self._relevant = [np.concatenate(self._relevant)]
        return self._classes[0], self._scores[0], self._relevant[0]

    def gap(self):
        """Global AP over every pooled pair, normalised by all positives of the ground truth."""
        classes, scores, relevant = self.arrays()
        return average_precision(scores, relevant, int(self.positives_per_class.sum()))

    def class_aps(self):
        """AP per class [V]: NaN for classes without positives, 0 for positives never in a top-k."""
        classes, scores, relevant = self.arrays()
        aps = np.where(self.positives_per_class > 0, 0.0, np.nan)
        ranked_classes, sums = _sum_tie_aware_precisions(classes, scores, relevant)
        with_positives = self.positives_per_class[ranked_classes] > 0
        aps[ranked_classes[with_positives]] = (
            sums[with_positives] / self.positives_per_class[ranked_classes[with_positives]])
        return aps


def _mean_over_classes_with_positives(class_aps):
    counted = class_aps[~np.isnan(class_aps)]
    return float(counted.mean()) if counted.size else 0.0


# ----------------------------------------------------------------------------- one-shot metrics

def gap(predictions, labels, top_k=DEFAULT_TOP_K):
    """Global Average Precision at top_k (SPEC 2).

    Every video contributes its top_k (score, label) pairs; all pairs are pooled and ranked by
    score; AP = (1/P) * sum_i precision@i * rel_i with P the total number of positive labels in
    `labels`, including positives that no top-k list contains. P = 0 gives 0.
    """
    predictions, positives = _as_batch(predictions, labels)
    triplets = _TopKTriplets(predictions.shape[1], _check_top_k(top_k))
    triplets.add(predictions, positives)
    return triplets.gap()


def mean_average_precision(predictions, labels, top_k=DEFAULT_TOP_K):
    """MAP as in the starter's eval.py (SPEC 2).

    For class c the ranked list is the videos whose top_k contains c (by their score for c); AP_c
    is normalised by c's total number of positives; the mean runs over the classes with at least one
    positive (0.0 when no class has one).
    """
    predictions, positives = _as_batch(predictions, labels)
    triplets = _TopKTriplets(predictions.shape[1], _check_top_k(top_k))
    triplets.add(predictions, positives)
    return _mean_over_classes_with_positives(triplets.class_aps())


def _hits_at_one(predictions, positives):
    # np.argmax returns the first maximum: ties go to the lower class index.
    top = np.argmax(predictions, axis=1)
    return positives[np.arange(predictions.shape[0]), top]


def hit_at_one(predictions, labels):
    """Fraction of videos whose arg-max class is a positive (ties: the lower class index)."""
    predictions, positives = _as_batch(predictions, labels)
    if predictions.shape[0] == 0:
        return 0.0
    return float(_hits_at_one(predictions, positives).mean())


def _perr_sum(predictions, positives):
    """Sum over videos of the precision of the top-n predictions, n = the video's positives."""
    num_positives = positives.sum(axis=1)
    max_n = int(num_positives.max()) if num_positives.size else 0
    if max_n == 0:
        return 0.0
    # The first max_n ranks of every video (descending score, ties to the lower class index); a
    # video with n positives looks at its first n. Partition first: a full sort costs 4x more.
    ranked = np.sort(top_k_indices(predictions, max_n), axis=1)  # class order
    order = np.argsort(-np.take_along_axis(predictions, ranked, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(ranked, order, axis=1)
    ranked_scores = np.take_along_axis(predictions, ranked, axis=1)
    ranked_hits = np.take_along_axis(positives, ranked, axis=1) & (ranked_scores > 0)
    within_n = np.arange(ranked.shape[1])[None, :] < num_positives[:, None]
    hits = (ranked_hits & within_n).sum(axis=1)
    has_positives = num_positives > 0
    return float((hits[has_positives] / num_positives[has_positives]).sum())


def perr(predictions, labels):
    """Precision at equal recall rate (SPEC 2).

    For a video with n > 0 positives: the fraction of its n highest-scoring classes that are
    positives, counting only predictions with score > 0. Videos without positives contribute 0 and
    still count in the average over all videos.
    """
    predictions, positives = _as_batch(predictions, labels)
    if predictions.shape[0] == 0:
        return 0.0
    return _perr_sum(predictions, positives) / predictions.shape[0]


# ----------------------------------------------------------------------------- streaming

class EvaluationMetrics:
    """Streaming GAP / MAP / Hit@1 / PERR (and an optional mean loss) over batches.

    `get()` after any split of a data set into batches equals the one-shot functions on the whole
    set. Memory: top_k triplets per video (about 20 * 17 bytes for top_k=20).
    """

    def __init__(self, num_classes, top_k=DEFAULT_TOP_K):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.top_k = _check_top_k(top_k)
        self._triplets = _TopKTriplets(self.num_classes, self.top_k)
        self.clear()

    def clear(self):
        """Forgets everything accumulated so far."""
        self._triplets.clear()
        self.num_examples = 0
        self._sum_hit_at_one = 0.0
        self._sum_perr = 0.0
        self._sum_loss = 0.0
        self._loss_examples = 0

    def accumulate(self, predictions, labels, loss=None):
        """Adds a batch; returns the batch's own hit_at_one, perr and gap (and loss when given).

        Args:
          predictions: [B, num_classes] scores (numpy or eager tensors).
          labels: [B, num_classes] multi-hot labels.
          loss: optional mean loss of the batch; `get()` then reports the example-weighted mean.
        """
        predictions, positives = _as_batch(predictions, labels, self.num_classes)
        batch_size = predictions.shape[0]
        batch_triplets = _TopKTriplets(self.num_classes, self.top_k)
        batch_triplets.add(predictions, positives)
        batch_hits = float(_hits_at_one(predictions, positives).sum())
        batch_perr = _perr_sum(predictions, positives)

        self._triplets.extend(batch_triplets)
        self.num_examples += batch_size
        self._sum_hit_at_one += batch_hits
        self._sum_perr += batch_perr
        result = {
            "hit_at_one": batch_hits / batch_size if batch_size else 0.0,
            "perr": batch_perr / batch_size if batch_size else 0.0,
            "gap": batch_triplets.gap(),
        }
        if loss is not None:
            loss = float(np.asarray(loss))
            self._sum_loss += loss * batch_size
            self._loss_examples += batch_size
            result["loss"] = loss
        return result

    def get(self):
        """Metrics over everything accumulated since the last `clear()`.

        Returns a dict: gap, map, hit_at_one, perr, num_examples, class_aps (numpy [V], NaN for
        classes without positives) and loss (only when losses were accumulated).
        """
        class_aps = self._triplets.class_aps()
        n = self.num_examples
        result = {
            "gap": self._triplets.gap(),
            "map": _mean_over_classes_with_positives(class_aps),
            "hit_at_one": self._sum_hit_at_one / n if n else 0.0,
            "perr": self._sum_perr / n if n else 0.0,
            "num_examples": n,
            "class_aps": class_aps,
        }
        if self._loss_examples:
            result["loss"] = self._sum_loss / self._loss_examples
        return result


# ----------------------------------------------------------------------------- segments (2019)

def _as_text(value):
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)


def segment_average_precisions(submission, ratings, k=SEGMENT_MAP_K, whitelist=None):
    """Per-class AP of the Kaggle 2019 segment metric; see `segment_map_at_k` for the rules.

    Returns a dict class -> AP over the classes that count (sorted by class).
    """
    k = _check_top_k(k)
    positives = collections.Counter()
    rated_classes = set()
    for key, rating in ratings.items():
        if len(key) != 3:
            raise ValueError(f"ratings keys must be (video_id, segment_start, class), got {key!r}")
        rated_classes.add(int(key[2]))
        if rating > 0:
            positives[int(key[2])] += 1
    candidates = rated_classes if whitelist is None else {int(c) for c in whitelist}
    counted = sorted(c for c in candidates if positives[c] > 0)
    aps = {}
    for cls in counted:
        ranked = submission.get(cls, ())
        seen = set()
        relevant = []
        for item in list(ranked)[:k]:
            if len(item) != 2:
                raise ValueError(f"class {cls}: submission entries must be (video_id, "
                                 f"segment_start) pairs, got {item!r}")
            pair = (item[0], int(item[1]))
            if pair in seen:
                raise ValueError(f"class {cls}: segment {_as_text(pair[0])}:{pair[1]} is "
                                 f"submitted twice")
            seen.add(pair)
            rating = ratings.get((pair[0], pair[1], cls))
            if rating is not None:  # unrated (segment, class) pairs are dropped
                relevant.append(rating > 0)
        relevant = np.asarray(relevant, bool)
        precision = np.cumsum(relevant) / np.arange(1, relevant.size + 1)
        aps[cls] = float((precision * relevant).sum() / min(positives[cls], k))
    return aps


def segment_map_at_k(submission, ratings, k=SEGMENT_MAP_K, whitelist=None):
    """Kaggle 2019 segment MAP@K (SPEC 2).

    Args:
      submission: dict class -> ranked sequence of (video_id, segment_start), best first (the
        `Class,Segments` CSV). Classes missing from it score AP 0.
      ratings: dict (video_id, segment_start, class) -> rating (1 positive, 0 negative); one entry
        per rated (segment, class) pair. Video ids must be spelled as in `submission`.
      k: the cut-off K (100000 in the challenge).
      whitelist: the scored classes (the 1000 of `segment_label_ids.csv`); None = every class that
        has a rating.

    For each counted class c: cut c's submitted list to its first K entries, drop the entries whose
    (segment, c) pair was not rated, and on what remains compute
    AP_c = (1 / min(P_c, K)) * sum_i precision@i * rel_i, where P_c is the number of positive
    ratings of c (also the positives that were not submitted). The result is the mean of AP_c.

    Classes that count: the whitelisted classes (all rated classes without a whitelist) that have
    at least one positive rating. A class without positives has no defined AP (0/0) and is left
    out, as MAP leaves out classes without positives; submitted classes outside the whitelist are
    ignored. No class counting gives 0.0. A segment submitted twice for a class raises ValueError.
    """
    aps = segment_average_precisions(submission, ratings, k=k, whitelist=whitelist)
    return float(np.mean(list(aps.values()))) if aps else 0.0


def add_segment_ratings(ratings, video_id, segment_labels, segment_start_times, segment_scores):
    """Adds one video's rated pairs (the parallel context arrays of a 2019 record) to `ratings`.

    Video ids are stored as text. Returns `ratings`.
    """
    if not len(segment_labels) == len(segment_start_times) == len(segment_scores):
        raise ValueError(f"video {_as_text(video_id)}: segment_labels, segment_start_times and "
                         f"segment_scores must have the same length, got {len(segment_labels)}, "
                         f"{len(segment_start_times)}, {len(segment_scores)}")
    video_id = _as_text(video_id)
    for cls, start, score in zip(segment_labels, segment_start_times, segment_scores):
        ratings[(video_id, int(start), int(cls))] = 1 if score > 0 else 0
    return ratings


class RatedSegmentMetrics:
    """Streaming segment MAP@K over rated segments (the batches of `segment_dataset` rated mode).

    Every (segment, class) pair with label_weight > 0 is one rated pair: its score is the model's
    prediction for that class and its rating the label. Per class the rated pairs are ranked by
    descending score (ties by video id, then segment start) to form the submission.

    This equals `segment_map_at_k` on a full submission as long as no class has K or more
    submitted segments ranked above one of its rated pairs (unrated segments are not seen here);
    with K = 100000 and the validation set's few hundred rated segments per class, it never does.
    """

    def __init__(self, k=SEGMENT_MAP_K, whitelist=None):
        self.k = _check_top_k(k)
        self.whitelist = None if whitelist is None else sorted(int(c) for c in whitelist)
        self.clear()

    def clear(self):
        self.ratings = {}
        self._scored = collections.defaultdict(list)  # class -> [(score, video_id, start)]

    def accumulate(self, video_ids, segment_starts, predictions, labels, label_weights):
        """Adds a batch of rated segments ([B] ids and starts, [B, V] predictions/labels/weights)."""
        predictions = np.asarray(predictions, np.float64)
        labels = np.asarray(labels)
        label_weights = np.asarray(label_weights)
        if not predictions.shape == labels.shape == label_weights.shape or predictions.ndim != 2:
            raise ValueError(f"predictions {predictions.shape}, labels {labels.shape} and "
                             f"label_weights {label_weights.shape} must share one [B, V] shape")
        rows, classes = np.nonzero(label_weights > 0)
        for row, cls in zip(rows, classes):
            video_id = _as_text(video_ids[row])
            start = int(segment_starts[row])
            key = (video_id, start, int(cls))
            if key in self.ratings:
                raise ValueError(f"segment {video_id}:{start} class {cls} is rated twice")
            self.ratings[key] = 1 if labels[row, cls] > 0 else 0
            self._scored[int(cls)].append((float(predictions[row, cls]), video_id, start))

    def submission(self):
        """class -> ranked [(video_id, segment_start)], at most k per class."""
        ranked = {}
        for cls, entries in self._scored.items():
            entries = sorted(entries, key=lambda e: (-e[0], e[1], e[2]))[:self.k]
            ranked[cls] = [(video_id, start) for _, video_id, start in entries]
        return ranked

    def get(self):
        aps = segment_average_precisions(self.submission(), self.ratings, k=self.k,
                                         whitelist=self.whitelist)
        return {"segment_map": float(np.mean(list(aps.values()))) if aps else 0.0,
                "num_classes": len(aps), "num_rated_pairs": len(self.ratings)}
