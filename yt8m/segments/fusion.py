"""The MOD segment scoring (SPEC 4): candidate classes from the video model, fused scores.

    candidates(video) = the video model's top N classes (N = 20), kept if whitelisted
    score(segment, c) = P_vid(c)^w * P_seg(c)^(1 - w)          (w = --video_score_weight, 0.05)
"""
import numpy as np

import yt8m  # noqa: F401
from yt8m.core import errors


def check_video_score_weight(weight):
    if not 0.0 <= weight <= 1.0:
        raise errors.InvalidInputError(f"--video_score_weight must be in [0, 1], got {weight}")
    return float(weight)


def top_classes(predictions, n):
    """(classes int64 [B, min(n, V)], their scores) of each row of predictions [B, V], best
    first; equal scores keep the lower class first."""
    predictions = np.asarray(predictions)
    # Stable sort of the negated scores: equal scores keep the lower class first.
    order = np.argsort(-predictions, axis=1, kind="stable")[:, :n].astype(np.int64)
    return order, np.take_along_axis(predictions, order, axis=1)


def candidate_classes(video_predictions, num_candidates, whitelist=None):
    """Per video: (classes int64 [<=N], video scores float64) of its top N, ties to the lower class,
    then restricted to `whitelist` (a set or None)."""
    if num_candidates <= 0:
        raise errors.InvalidInputError(
            f"--segment_candidates must be positive, got {num_candidates}")
    result = []
    for classes, scores in zip(*top_classes(video_predictions, num_candidates)):
        if whitelist is not None:
            keep = np.asarray([int(c) in whitelist for c in classes], bool)
            classes, scores = classes[keep], scores[keep]
        result.append((classes, scores.astype(np.float64)))
    return result


def fuse(video_scores, segment_scores, video_score_weight):
    """P_vid^w * P_seg^(1 - w) in float64 (elementwise)."""
    w = video_score_weight
    return (np.power(np.asarray(video_scores, np.float64), w)
            * np.power(np.asarray(segment_scores, np.float64), 1.0 - w))
