"""Segment ratings of 2019 validate files: {(video id, start, class): 0 or 1} (SPEC 1).

Only the context is parsed (id, segment_labels, segment_start_times, segment_scores); the frames
are never decoded, so reading the ratings of a whole validation set is cheap.
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import metrics
from yt8m.training import inputs
from yt8m.core import errors
from yt8m.core import files

_CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "segment_labels": tf.io.RaggedFeature(tf.int64),
    "segment_start_times": tf.io.RaggedFeature(tf.int64),
    "segment_scores": tf.io.RaggedFeature(tf.float32),
}
_RATED = ("segment_labels", "segment_start_times", "segment_scores")


def _parse(serialized):
    context, _, _ = tf.io.parse_sequence_example(serialized, context_features=_CONTEXT)
    return context


def _rows(ragged):
    """RaggedTensor [B, None] -> list of B numpy arrays."""
    values, splits = ragged.values.numpy(), ragged.row_splits.numpy()
    return [values[begin:end] for begin, end in zip(splits[:-1], splits[1:])]


def read_segment_ratings(data_pattern, flag="--eval_data_pattern", batch_size=256):
    """All rated (segment, class) pairs of the files; errors name the file (and video)."""
    ratings = {}
    for path in inputs.require_files(data_pattern, flag):
        dataset = tf.data.TFRecordDataset(path).batch(batch_size).map(_parse)
        try:
            for context in dataset:
                ids = tf.where(tf.strings.length(context["id"]) > 0, context["id"],
                               context["video_id"]).numpy()
                labels, starts, scores = (_rows(context[name]) for name in _RATED)
                for video_id, *rated in zip(ids, labels, starts, scores):
                    if not video_id:
                        raise errors.InvalidInputError(f"{path}: a record has no id (or video_id)")
                    try:
                        metrics.add_segment_ratings(ratings, video_id, *rated)
                    except ValueError as error:
                        raise errors.InvalidInputError(f"{path}: {error}") from None
        except tf.errors.OpError as error:
            raise errors.InvalidInputError(f"{path}: not a file of frame-level SequenceExamples "
                                           f"({error.message.splitlines()[0]})") from None
    if not ratings:
        raise errors.InvalidInputError(
            f"{flag}={data_pattern!r}: the files hold no segment ratings "
            "(segment_labels); use the 2019 segment-rated validate files")
    return ratings


def read_label_cache(path, flag="--label_cache"):
    """The ratings of a label cache written by `write_label_cache` (the starter's
    segment_eval_inference.py format: one `<video id>:<start>,<class>,<score>` line per rated
    pair); errors name the file and line."""
    ratings = {}
    with tf.io.gfile.GFile(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                segment, cls, score = line.strip().split(",")
                video_id, start = segment.rsplit(":", 1)
                ratings[(video_id, int(start), int(cls))] = 1 if float(score) > 0 else 0
            except ValueError:
                raise errors.InvalidInputError(
                    f"{flag}={path!r} line {number}: expected <video id>:<start>,<class>,<score>, "
                    f"got {line.strip()[:80]!r}") from None
    return ratings


def write_label_cache(path, ratings):
    """Writes `ratings` as a label cache (atomically), in key order."""
    files.write_text_atomically(path, "".join(
        f"{video_id}:{start},{cls},{score}\n"
        for (video_id, start, cls), score in sorted(ratings.items())))


def cached_segment_ratings(data_pattern, cache_path, flag="--eval_data_pattern"):
    """The starter's --label_cache: the ratings of `cache_path` when it exists, else those of
    `data_pattern`, then written to `cache_path` (no cache when it is empty)."""
    if cache_path and tf.io.gfile.exists(cache_path):
        return read_label_cache(cache_path)
    ratings = read_segment_ratings(data_pattern, flag)
    if cache_path:
        write_label_cache(cache_path, ratings)
    return ratings
