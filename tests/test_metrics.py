"""yt8m.metrics against hand-computed cases, naive loop references and streaming == one-shot."""
import numpy as np
import pytest

from yt8m import metrics


# ----------------------------------------------------------------------------- naive references
# Straight loops over the SPEC 2 definitions, valid when scores are distinct (no tie rules needed).

def naive_top_k(row, k):
    return sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]


def naive_ap(pairs, num_positives):
    """pairs: (score, is_positive); AP = (1/P) sum_i precision@i * rel_i."""
    if num_positives == 0:
        return 0.0
    hits, total = 0, 0.0
    for rank, (_, positive) in enumerate(sorted(pairs, key=lambda p: -p[0]), start=1):
        if positive:
            hits += 1
            total += hits / rank
    return total / num_positives


def naive_gap(predictions, labels, k):
    pairs = [(row[c], labels[v][c] > 0) for v, row in enumerate(predictions)
             for c in naive_top_k(row, k)]
    return naive_ap(pairs, int((labels > 0).sum()))


def naive_map(predictions, labels, k):
    aps = []
    for c in range(predictions.shape[1]):
        positives = int((labels[:, c] > 0).sum())
        if positives == 0:
            continue
        pairs = [(row[c], labels[v][c] > 0) for v, row in enumerate(predictions)
                 if c in naive_top_k(row, k)]
        aps.append(naive_ap(pairs, positives))
    return sum(aps) / len(aps)


def naive_perr(predictions, labels):
    total = 0.0
    for row, row_labels in zip(predictions, labels):
        n = int((row_labels > 0).sum())
        if n == 0:
            continue
        top = naive_top_k(row, n)
        total += sum(1 for c in top if row_labels[c] > 0 and row[c] > 0) / n
    return total / len(predictions)


def random_case(seed, videos=37, classes=11, distinct=True):
    rng = np.random.default_rng(seed)
    if distinct:  # a permutation of distinct values in (0, 1]
        predictions = (rng.permutation(videos * classes) + 1.0).reshape(videos, classes)
        predictions /= predictions.max()
    else:  # one decimal: many ties, also at zero
        predictions = np.round(rng.random((videos, classes)), 1)
    labels = (rng.random((videos, classes)) < 0.2).astype(np.float32)
    labels[3] = 0.0  # a video without positives
    labels[:, 5] = 0.0  # a class without positives
    return predictions, labels


# ----------------------------------------------------------------------------- hand-computed

PREDICTIONS = np.array([[0.9, 0.1, 0.5],
                        [0.2, 0.8, 0.3]])
LABELS = np.array([[1, 0, 1],
                   [0, 0, 1]], np.float32)


def test_gap_hand_computed():
    # top-2 pairs: v0 -> (0.9,+), (0.5,+); v1 -> (0.8,-), (0.3,+). Pooled: + - + +, P = 3.
    # AP = (1/1 + 2/3 + 3/4) / 3 = 29/36.
    assert metrics.gap(PREDICTIONS, LABELS, top_k=2) == pytest.approx(29 / 36, abs=1e-12)


def test_gap_counts_positives_outside_top_k():
    # top-1 pairs: (0.9,+) and (0.8,-); P = 3 counts the two positives at class 2.
    # AP = (1/1) / 3.
    assert metrics.gap(PREDICTIONS, LABELS, top_k=1) == pytest.approx(1 / 3, abs=1e-12)


def test_gap_without_positives_is_zero():
    assert metrics.gap(PREDICTIONS, np.zeros_like(LABELS), top_k=2) == 0.0
    assert metrics.average_precision([0.3, 0.2], [0, 0]) == 0.0


def test_map_hand_computed_excludes_classes_without_positives():
    # class 0: list [(0.9,+)], P=1 -> 1. class 2: [(0.5,+), (0.3,+)], P=2 -> 1.
    # class 1 has no positive: left out. MAP = (1 + 1) / 2.
    assert metrics.mean_average_precision(PREDICTIONS, LABELS, top_k=2) == 1.0
    # top-1: class 0 -> 1; class 2 has positives but is in no top-1 list -> AP 0; MAP = 1/2.
    assert metrics.mean_average_precision(PREDICTIONS, LABELS, top_k=1) == 0.5
    assert metrics.mean_average_precision(PREDICTIONS, np.zeros_like(LABELS)) == 0.0


def test_hit_at_one_and_ties_go_to_lower_class():
    assert metrics.hit_at_one(PREDICTIONS, LABELS) == 0.5  # v0 class 0 hit, v1 class 1 miss
    tied = np.array([[0.4, 0.4, 0.1]])
    assert metrics.hit_at_one(tied, [[1, 0, 0]]) == 1.0  # arg-max of a tie is class 0
    assert metrics.hit_at_one(tied, [[0, 1, 0]]) == 0.0


def test_perr_hand_computed():
    predictions = np.array([[0.9, 0.1, 0.5, 0.7],    # 2 positives {0, 1}: top-2 {0, 3} -> 1/2
                            [0.0, 0.6, 0.0, 0.2],    # 2 positives {0, 1}: top-2 {1, 3} -> 1/2
                            [0.3, 0.2, 0.1, 0.0],    # no positive -> contributes 0
                            [0.0, 0.0, 0.0, 0.0]])   # 1 positive {2}: top-1 {0} (tie) -> 0
    labels = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])
    # mean over all 4 videos: (1/2 + 1/2 + 0 + 0) / 4
    assert metrics.perr(predictions, labels) == pytest.approx(0.25, abs=1e-12)
    # a positive with score 0 inside the top-n does not count: top-1 of [0, 0] is class 0
    assert metrics.perr([[0.0, 0.0]], [[1, 0]]) == 0.0


def test_tie_aware_average_precision():
    # ranks: 0.9 (-) | 0.5 (+), 0.5 (-) | 0.1 (+); the tied block ends at rank 3 with 1 positive,
    # so its positive gets precision 1/3 whatever the order; the last positive gets 2/4.
    # AP = (1/3 + 2/4) / 2 = 5/12, for both orders of the tied pair.
    assert metrics.average_precision([0.9, 0.5, 0.5, 0.1], [0, 1, 0, 1]) == pytest.approx(5 / 12)
    assert metrics.average_precision([0.9, 0.5, 0.5, 0.1], [0, 0, 1, 1]) == pytest.approx(5 / 12)
    # Positives not in the list count when P is given: (1/1) / 4.
    assert metrics.average_precision([0.8], [1], num_positives=4) == 0.25


def test_top_k_ties_at_the_cut_take_lower_class_index():
    predictions = np.array([[0.5, 0.7, 0.5, 0.5]])
    assert sorted(metrics.top_k_indices(predictions, 2)[0]) == [0, 1]
    # positive at class 2 is tied with class 0 at the cut but loses: pairs (0.7,-), (0.5,-)
    assert metrics.gap(predictions, [[0, 0, 1, 0]], top_k=2) == 0.0
    # positive at class 0 enters: (0.7,-), (0.5,+) -> (1/2) / 1
    assert metrics.gap(predictions, [[1, 0, 0, 0]], top_k=2) == 0.5
    # many tied rows: the chosen set is always the (-score, class) order's first k
    many = np.round(np.random.default_rng(3).random((200, 30)), 1)
    for row, chosen in zip(many, metrics.top_k_indices(many, 5)):
        assert sorted(chosen) == sorted(naive_top_k(row, 5))
    many_labels = (np.random.default_rng(4).random((200, 30)) < 0.2).astype(np.float32)
    assert metrics.perr(many, many_labels) == pytest.approx(naive_perr(many, many_labels),
                                                            abs=1e-12)


# ----------------------------------------------------------------------------- against references

@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("top_k", [1, 3, 20])
def test_against_naive_loops(seed, top_k):
    predictions, labels = random_case(seed)
    assert metrics.gap(predictions, labels, top_k) == pytest.approx(
        naive_gap(predictions, labels, top_k), abs=1e-12)
    assert metrics.mean_average_precision(predictions, labels, top_k) == pytest.approx(
        naive_map(predictions, labels, top_k), abs=1e-12)
    assert metrics.perr(predictions, labels) == pytest.approx(naive_perr(predictions, labels),
                                                              abs=1e-12)
    expected_hits = np.mean([labels[v, np.argmax(predictions[v])] for v in range(len(labels))])
    assert metrics.hit_at_one(predictions, labels) == pytest.approx(expected_hits)


@pytest.mark.parametrize("distinct", [True, False])
def test_streaming_equals_one_shot(distinct):
    predictions, labels = random_case(7, videos=101, classes=13, distinct=distinct)
    streaming = metrics.EvaluationMetrics(num_classes=13, top_k=4)
    bounds = [0, 1, 1, 18, 19, 60, 101]  # uneven batches, one empty
    for start, end in zip(bounds[:-1], bounds[1:]):
        batch = streaming.accumulate(predictions[start:end], labels[start:end])
        if end > start:
            assert batch["gap"] == metrics.gap(predictions[start:end], labels[start:end], 4)
            assert batch["perr"] == pytest.approx(
                metrics.perr(predictions[start:end], labels[start:end]), abs=1e-12)
    result = streaming.get()
    assert result["num_examples"] == 101
    assert result["gap"] == pytest.approx(metrics.gap(predictions, labels, 4), abs=1e-12)
    assert result["map"] == pytest.approx(
        metrics.mean_average_precision(predictions, labels, 4), abs=1e-12)
    assert result["hit_at_one"] == pytest.approx(metrics.hit_at_one(predictions, labels))
    assert result["perr"] == pytest.approx(metrics.perr(predictions, labels), abs=1e-12)
    assert np.isnan(result["class_aps"][5])  # the class without positives
    # Reversing the video order changes nothing (ties included).
    reverse = metrics.EvaluationMetrics(num_classes=13, top_k=4)
    reverse.accumulate(predictions[::-1], labels[::-1])
    assert reverse.get()["gap"] == pytest.approx(result["gap"], abs=1e-12)
    assert reverse.get()["map"] == pytest.approx(result["map"], abs=1e-12)


def test_streaming_loss_and_clear():
    streaming = metrics.EvaluationMetrics(num_classes=3, top_k=2)
    streaming.accumulate(PREDICTIONS[:1], LABELS[:1], loss=2.0)
    streaming.accumulate(PREDICTIONS, LABELS, loss=5.0)
    # example-weighted: (2.0 * 1 + 5.0 * 2) / 3
    assert streaming.get()["loss"] == pytest.approx(4.0)
    streaming.clear()
    assert streaming.get()["num_examples"] == 0
    assert streaming.get()["gap"] == 0.0
    assert "loss" not in streaming.get()
    streaming.accumulate(PREDICTIONS, LABELS)
    assert streaming.get()["gap"] == pytest.approx(29 / 36)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"labels shape \(2, 2\) differs from predictions shape "
                                         r"\(2, 3\)"):
        metrics.gap(PREDICTIONS, LABELS[:, :2])
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        metrics.gap(PREDICTIONS, LABELS, top_k=0)
    with pytest.raises(ValueError, match="predictions contain NaN"):
        metrics.hit_at_one([[np.nan, 0.1]], [[1, 0]])
    with pytest.raises(ValueError, match="predictions have 3 classes, the metrics were created "
                                         "for num_classes=4"):
        metrics.EvaluationMetrics(4).accumulate(PREDICTIONS, LABELS)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        metrics.EvaluationMetrics(0)


# ----------------------------------------------------------------------------- segment MAP@K

RATINGS = {
    ("a", 0, 1): 1, ("a", 5, 1): 0, ("b", 0, 1): 1, ("c", 10, 1): 1,  # class 1: 3 positives
    ("a", 0, 2): 1, ("b", 5, 2): 0,                                   # class 2: 1 positive
    ("c", 0, 3): 0,                                                   # class 3: no positive
    ("b", 0, 4): 1,                                                   # class 4: not submitted
}
SUBMISSION = {
    1: [("a", 0), ("z", 0), ("a", 5), ("b", 0)],  # ("z", 0) unrated for class 1 -> dropped
    2: [("b", 5), ("a", 0)],
    3: [("c", 0)],
    7: [("a", 0)],                                # not rated, not whitelisted
}


def test_segment_map_hand_computed():
    # class 1 after dropping unrated: + - +  -> (1/1 + 2/3) / P=3 = 5/9
    # class 2: - +                          -> (1/2) / 1 = 1/2
    # class 3: no positive rating           -> left out
    # class 4: positive but not submitted   -> 0
    aps = metrics.segment_average_precisions(SUBMISSION, RATINGS)
    assert aps == pytest.approx({1: 5 / 9, 2: 1 / 2, 4: 0.0})
    assert metrics.segment_map_at_k(SUBMISSION, RATINGS) == pytest.approx((5 / 9 + 1 / 2) / 3)
    # whitelist {1, 3}: only class 1 counts (3 has no positive)
    assert metrics.segment_map_at_k(SUBMISSION, RATINGS, whitelist=[1, 3]) == pytest.approx(5 / 9)
    assert metrics.segment_map_at_k(SUBMISSION, RATINGS, whitelist=[3]) == 0.0


def test_segment_map_cut_to_k_and_positives_capped_at_k():
    # K=2: class 1 list cut to [("a",0), ("z",0)] -> after filtering [+]; P = min(3, 2) = 2
    # -> AP (1/1) / 2. class 2: [-, +] fits in K -> (1/2) / min(1, 2).
    aps = metrics.segment_average_precisions(SUBMISSION, RATINGS, k=2, whitelist=[1, 2])
    assert aps == pytest.approx({1: 1 / 2, 2: 1 / 2})
    # K=1 with the positive first: AP (1/1) / min(3, 1) = 1
    assert metrics.segment_map_at_k({1: [("b", 0)]}, RATINGS, k=1, whitelist=[1]) == 1.0


def test_segment_map_rejects_duplicates():
    with pytest.raises(ValueError, match="class 1: segment a:0 is submitted twice"):
        metrics.segment_map_at_k({1: [("a", 0), ("a", 0)]}, RATINGS)


def test_add_segment_ratings_and_rated_segment_metrics():
    ratings = metrics.add_segment_ratings({}, b"v1", [3, 4], [0, 5], [1.0, 0.0])
    assert ratings == {("v1", 0, 3): 1, ("v1", 5, 4): 0}
    with pytest.raises(ValueError, match="video v2: segment_labels, segment_start_times and "
                                         "segment_scores must have the same length, got 1, 2, 1"):
        metrics.add_segment_ratings({}, "v2", [1], [0, 5], [1.0])

    # Three rated segments, V=3. Class 1 rated on all three, class 2 on the first only.
    streaming = metrics.RatedSegmentMetrics(k=100)
    streaming.accumulate([b"a", b"b"], [0, 5],
                         predictions=[[0.1, 0.9, 0.4], [0.1, 0.8, 0.0]],
                         labels=[[0, 0, 1], [0, 1, 0]],
                         label_weights=[[0, 1, 1], [0, 1, 0]])
    streaming.accumulate([b"c"], [10], predictions=[[0.0, 0.2, 0.0]], labels=[[0, 1, 0]],
                         label_weights=[[0, 1, 0]])
    # class 1 ranked by score: a:0 (0.9, -), b:5 (0.8, +), c:10 (0.2, +) -> (1/2 + 2/3) / 2
    # class 2: a:0 (+) -> 1.  mean = (7/12 + 1) / 2
    assert streaming.submission()[1] == [("a", 0), ("b", 5), ("c", 10)]
    result = streaming.get()
    assert result["segment_map"] == pytest.approx((7 / 12 + 1) / 2)
    assert result["num_classes"] == 2 and result["num_rated_pairs"] == 4
    with pytest.raises(ValueError, match="segment c:10 class 1 is rated twice"):
        streaming.accumulate([b"c"], [10], [[0, 1, 0]], [[0, 1, 0]], [[0, 1, 0]])
