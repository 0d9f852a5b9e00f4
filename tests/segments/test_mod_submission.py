"""MOD's submission steps in yt8m.segments.inference against the reference's script
(tests/reference/mod_submission.py, from analysis/dummy_prediction.py and value_model.py): the
per-class candidate limit by video score and the fallback fill from a video-level CSV."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.segments import fallback
from yt8m.segments import inference
from reference import mod_submission

V = 6
WHITELIST = [1, 2, 3]
K = 7  # MOD's 100000, scaled down: the candidate limit, the fallback limit and the row length
LENGTHS = {"a": 17, "b": 10, "c": 20, "d": 7, "e": 12}  # frames; full segments 3, 2, 4, 1, 2
# Top-20 video predictions (the candidates). Class 1: a, b, c hold 3 + 2 + 4 = 9 segments > K, so
# c's last two are cut by the limit; classes 2 and 3 have fewer fused segments than K.
VIDEO_TOP20 = {"a": {1: 0.9, 2: 0.3}, "b": {1: 0.8, 5: 0.7}, "c": {1: 0.5, 3: 0.7},
               "d": {2: 0.6}, "e": {0: 0.4}}
# Top-1000 video predictions: the fallback.
VIDEO_TOP1000 = {"a": {1: 0.9, 2: 0.3, 3: 0.2}, "b": {1: 0.8, 2: 0.5, 3: 0.1, 5: 0.7},
                 "c": {1: 0.5, 3: 0.7, 2: 0.05}, "d": {2: 0.6, 3: 0.4}, "e": {0: 0.4, 4: 0.3}}


def segment_scores():
    """Per full segment, a distinct score for every class; c:10 and c:15 score highest in class 1
    (beyond the limit, so they must not be ranked)."""
    rng = np.random.default_rng(0)
    scores = {}
    for video, length in LENGTHS.items():
        for start in range(0, length - length % 5, 5):
            scores[f"{video}:{start}"] = dict(enumerate(rng.uniform(0.05, 0.9, V)))
    scores["c:10"][1], scores["c:15"][1] = 0.99, 0.98
    return scores


def batches(scores):
    """Segment batches as the reader gives them (partial trailing segments included) and a
    segment model returning `scores`."""
    ids, starts, frames = [], [], []
    for video, length in LENGTHS.items():
        for start in range(0, length, 5):
            ids.append(video)
            starts.append(start)
            frames.append(min(5, length - start))
    batch = {"id": tf.constant(ids), "segment_start": tf.constant(starts),
             "num_frames": tf.constant(frames)}

    def predict(batch):
        rows = []
        for video, start in zip(batch["id"].numpy(), batch["segment_start"].numpy()):
            row = scores.get(f"{video.decode()}:{start}", dict.fromkeys(range(V), 0.5))
            rows.append([row[c] for c in range(V)])
        return np.array(rows)
    return [batch], predict


def candidates(whitelist):
    return {video: (np.array([c for c in row if c in whitelist], np.int64),
                    np.array([s for c, s in row.items() if c in whitelist], np.float64))
            for video, row in VIDEO_TOP20.items()}


def write_video_csv(path, predictions):
    lines = ["VideoId,LabelConfidencePairs"]
    lines += [f"{video}," + " ".join(f"{c} {s!r}" for c, s in row.items())
              for video, row in predictions.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def our_rows(tmp_path, whitelist, candidate_limit=K, use_fallback=True):
    scores = segment_scores()
    segment_batches, predict = batches(scores)
    ranking, num_segments, counts = inference.rank_segments(
        segment_batches, candidates(whitelist), predict, 0.05, K, V, candidate_limit)
    assert num_segments == 12 and counts == {"a": 3, "b": 2, "c": 4, "d": 1, "e": 2}
    path = write_video_csv(tmp_path / "top1000.csv", VIDEO_TOP1000)
    videos = fallback.read_class_videos(path, whitelist) if use_fallback else None
    rows = inference.submission_rows(ranking, whitelist, videos, counts, path)
    return {cls: [f"{video}:{start}" for video, start in row] for cls, row in rows}


def reference_rows(whitelist):
    video_lengths = dict(LENGTHS)
    top20 = {v: {c: s for c, s in row.items()} for v, row in VIDEO_TOP20.items()}
    candidate_lists = mod_submission.video_candidates(top20, video_lengths, whitelist, K)
    fused = mod_submission.fuse(candidate_lists, segment_scores(), whitelist, 0.05, 0.95)
    fallback_lists = mod_submission.video_candidates(VIDEO_TOP1000, video_lengths, whitelist, K)
    mod_submission.add_fallbacks(fused, fallback_lists, K)
    text = mod_submission.submission_rows(fused, whitelist, K)
    rows = {}
    for line in text.splitlines()[1:]:
        cls, segments = line.split(",")
        rows[int(cls)] = segments.split()
    return rows


def test_candidate_limit_and_fallback_equal_the_reference(tmp_path):
    got = our_rows(tmp_path, WHITELIST)
    expected = reference_rows(WHITELIST)
    assert got == expected
    # The hand-built case exercises both steps: class 1 lost c:10 and c:15 to the limit although
    # they score best; classes 2 and 3 were short and are filled in fallback order.
    assert "c:10" not in got[1] and len(got[1]) == K
    assert got[2][4:] == ["b:0", "b:5", "c:0"] and got[3][4:] == ["d:0", "a:0", "a:5"]
    without_limit = our_rows(tmp_path, WHITELIST, candidate_limit=0, use_fallback=False)
    assert without_limit[1][:2] == ["c:10", "c:15"] and len(without_limit[2]) == 4


def test_a_class_without_fused_segments_is_filled_too(tmp_path):
    """Class 4 has no candidate (the reference's writer fails on it: KeyError); here its row is
    the fallback list alone."""
    got = our_rows(tmp_path, WHITELIST + [4])
    assert got[4] == ["e:0", "e:5"]
    assert {cls: got[cls] for cls in WHITELIST} == reference_rows(WHITELIST)


def test_fallback_file_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,labels\na,1 0.5\n")
    with pytest.raises(ValueError, match=r"line 1: expected the header 'VideoId,Label"):
        fallback.read_class_videos(str(bad))
    bad.write_text("VideoId,LabelConfidencePairs\na,1 0.5 2\n")
    with pytest.raises(ValueError, match=r"bad.csv' line 2: expected <video id>,<class> <score>"):
        fallback.read_class_videos(str(bad))
    with pytest.raises(FileNotFoundError, match="--segment_fallback_file=.*missing.csv.*no such"):
        fallback.read_class_videos(str(tmp_path / "missing.csv"))
    by_class = fallback.read_class_videos(write_video_csv(tmp_path / "f.csv", {"zz": {1: 0.5}}))
    with pytest.raises(ValueError, match=r"lists 1 video\(s\) that are not in "
                                         r"--input_data_pattern, e.g. 'zz'"):
        fallback.check_videos(by_class, LENGTHS, "f.csv")


def test_fallback_ties_rank_by_video_id(tmp_path):
    """Equal scores: video id order (the project's one tie order; the reference's order there was
    Python 2 dict order, i.e. arbitrary)."""
    path = write_video_csv(tmp_path / "ties.csv", {"b": {1: 0.5}, "a": {1: 0.5}, "c": {1: 0.7}})
    assert fallback.read_class_videos(path)[1] == [("c", 0.7), ("a", 0.5), ("b", 0.5)]
    assert fallback.fill([("a", 0)], [("a", 0), ("a", 5), ("b", 0)], 2) == [("a", 0), ("a", 5)]
