"""Segment ratings of 2019 validate files: {(video id, start, class): 0 or 1} (SPEC 1).

Only the context is parsed (id, segment_labels, segment_start_times, segment_scores); the frames
are never decoded, so reading the ratings of a whole validation set is cheap.
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import metrics
from yt8m.training import inputs
from yt8m.core import errors

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
