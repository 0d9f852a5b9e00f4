"""MOD's fallback step (linrongc/solution_youtube8m_v3 analysis/value_model.py `add_fallbacks`):
fill each class of the segment CSV up to K segments from a video-level prediction file.

    fallback list of class c: the videos whose row of a video-level CSV lists c (MOD: the video
        model's top 1000 classes per video, `inference.py --top_k=1000`), by that score
        descending (ties: video id), each expanded to its full 5-frame segments (starts 0, 5,
        ...), cut at K segments
    row of c: its ranked segments, then the fallback list's segments it does not hold yet, until
        K (appended in fallback order, not re-sorted)

MOD fills only the classes that have a fused segment (a whitelisted class without one made its
writer fail); here such a class is filled too.
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.core import errors
from yt8m.data import records
from yt8m.inference.submission import VIDEO_SUBMISSION_HEADER


def read_class_videos(path, classes=None, flag="--segment_fallback_file"):
    """A video-level CSV (`VideoId,LabelConfidencePairs`, rows `id,c s c s ...`) ->
    {class: [(video id, score), ...]} best first (ties: video id), for `classes` (None: all).
    Errors name the file and line."""
    if not tf.io.gfile.exists(path):
        raise errors.MissingInputError(f"{flag}={path!r}: no such file")
    wanted = None if classes is None else set(int(c) for c in classes)
    by_class = {}
    with tf.io.gfile.GFile(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if number == 1:
                if line.strip() != VIDEO_SUBMISSION_HEADER:
                    raise errors.InvalidInputError(
                        f"{flag}={path!r} line 1: expected the header "
                        f"{VIDEO_SUBMISSION_HEADER!r}, got {line[:80]!r}")
                continue
            if not line.strip():
                continue
            video_id, comma, pairs = line.partition(",")
            fields = pairs.split()
            if not comma or not video_id or len(fields) % 2:
                raise errors.InvalidInputError(
                    f"{flag}={path!r} line {number}: expected <video id>,<class> <score> ..., "
                    f"got {line[:80]!r}")
            try:
                row = [(int(c), float(s)) for c, s in zip(fields[0::2], fields[1::2])]
            except ValueError:
                raise errors.InvalidInputError(
                    f"{flag}={path!r} line {number}: classes must be integers and scores "
                    f"numbers, got {line[:80]!r}") from None
            for cls, score in row:
                if wanted is None or cls in wanted:
                    by_class.setdefault(cls, []).append((video_id, score))
    for videos in by_class.values():
        videos.sort(key=lambda item: (-item[1], item[0]))
    return by_class


def check_videos(by_class, known_videos, path, flag="--segment_fallback_file"):
    """Every video the file lists must be one of `known_videos` (the videos being ranked)."""
    unknown = sorted({video for videos in by_class.values() for video, _ in videos}
                     - set(known_videos))
    if unknown:
        raise errors.InvalidInputError(
            f"{flag}={path!r} lists {len(unknown)} video(s) that are not in "
            f"--input_data_pattern, e.g. {', '.join(map(repr, unknown[:3]))}")


def fallback_segments(class_videos, segment_counts, limit, path="",
                      flag="--segment_fallback_file"):
    """One class's fallback list: [(video id, start), ...] of the videos of `class_videos` in
    order, each with its `segment_counts[video]` full segments, at most `limit` segments."""
    segments = []
    for video_id, _ in class_videos:
        if video_id not in segment_counts:
            raise errors.InvalidInputError(
                f"{flag}={path!r} lists video {video_id!r}, which is not in --input_data_pattern")
        for index in range(segment_counts[video_id]):
            if len(segments) >= limit:
                return segments
            segments.append((video_id, index * records.SEGMENT_SIZE))
    return segments


def fill(ranked, fallback, k):
    """`ranked` [(video id, start), ...] then the `fallback` segments it lacks, up to k in all."""
    row = list(ranked[:k])
    listed = set(row)
    for segment in fallback:
        if len(row) >= k:
            break
        if segment not in listed:
            row.append(segment)
            listed.add(segment)
    return row
