"""tf.data readers for the YouTube-8M record formats (SPEC section 1).

Every reader is the same pipeline with a different parse step:

    list_files -> files read in parallel, each record paired with its file name (record_stream)
               -> [shuffle] -> batch of serialized records -> one batched parse + checks -> prefetch

Parsing a batch with one `tf.io.parse_sequence_example`/`parse_example` call is much cheaper than
a parse per record. Every check names the file (and the video id where it is known).
Segment readers parse batches of videos, cut them into segments, then re-batch the segments.
The parse steps are public (`frame_batch_parser`, `segment_batch_parser`): a pipeline that reads
records its own way (Beam) parses them exactly as the readers do.
"""
import dataclasses
import typing

import numpy as np

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.data import bucketing, records
from yt8m.data.checks import after, as_text, check_rows, raise_if
from yt8m.data.record_stream import list_files, named_records

AUTOTUNE = tf.data.AUTOTUNE
_SEGMENT_PARSE_VIDEOS = 32  # videos parsed together before their segments are re-batched

__all__ = ["list_files", "frame_dataset", "video_dataset", "segment_dataset", "dequantize_padded",
           "frame_batch_parser", "segment_batch_parser"]


# ----------------------------------------------------------------------------------------------
# Parsing pieces shared by the formats


def _id_features():
    return {"id": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "labels": tf.io.VarLenFeature(tf.int64)}


def _video_ids(parsed, filenames):
    """`id`, or `video_id` in 2017 files; a record with neither fails naming its file."""
    has_id = tf.strings.length(parsed["id"]) > 0
    video_ids = tf.where(has_id, parsed["id"], parsed["video_id"])
    missing = tf.strings.length(video_ids) == 0

    def message():
        row = tf.argmax(tf.cast(missing, tf.int32), output_type=tf.int32)
        return tf.strings.join([filenames[row], ": record has no id (or video_id) value"])
    return video_ids, raise_if(tf.reduce_any(missing), message)


def _multi_hot(labels, num_classes, filenames, video_ids):
    """SparseTensor of class indices [B, ?] -> float32 multi-hot [B, num_classes], range checked.

    The check looks at the label values once; the row (file, video) of the first bad value is
    only looked up to write the message."""
    out_of_range = (labels.values < 0) | (labels.values >= num_classes)

    def message():
        first = tf.argmax(tf.cast(out_of_range, tf.int32), output_type=tf.int32)
        row = tf.cast(labels.indices[first, 0], tf.int32)
        return tf.strings.join([filenames[row], ": video ", video_ids[row], ": label ",
                                as_text(labels.values[first]), " is outside [0, num_classes=",
                                str(num_classes), ")"])
    check = raise_if(tf.reduce_any(out_of_range), message)
    with tf.control_dependencies([check]):
        hot = tf.sparse.to_indicator(labels, num_classes)
    return tf.cast(hot, tf.float32), check


def _frame_features(feature_names):
    return {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in feature_names}


def _check_frames(strings, lengths, feature_names, feature_sizes, filenames, video_ids):
    """Every frame of every feature holds exactly `size` bytes; all features have equal lengths.

    One test per feature and batch: no frame is longer than `size` and the bytes add up to `size`
    per frame, which together mean every frame has exactly `size` bytes (padding frames are "",
    0 bytes). Which frame is wrong is only worked out to write the message."""
    checks = []
    first = feature_names[0]
    for name, size in zip(feature_names, feature_sizes):
        byte_counts = tf.strings.length(strings[name])  # [B, T]; padding frames are ""
        frames = lengths[name]
        all_sized = ((tf.reduce_max(byte_counts) <= size)
                     & (tf.reduce_sum(tf.cast(byte_counts, tf.int64))
                        == size * tf.reduce_sum(tf.cast(frames, tf.int64))))

        def message(name=name, size=size, byte_counts=byte_counts, frames=frames):
            valid = tf.sequence_mask(frames, tf.shape(byte_counts)[1])
            wrong = valid & tf.not_equal(byte_counts, size)
            row = tf.argmax(tf.cast(tf.reduce_any(wrong, axis=1), tf.int32), output_type=tf.int32)
            frame = tf.argmax(tf.cast(wrong[row], tf.int32), output_type=tf.int32)
            return tf.strings.join([
                filenames[row], ": video ", video_ids[row], ": feature ", name, " frame ",
                as_text(frame), " has ", as_text(byte_counts[row, frame]), " bytes, expected ",
                str(size)])
        checks.append(raise_if(tf.logical_not(all_sized), message))
        if name != first:
            def unequal(row, name=name):
                return tf.strings.join([
                    "feature ", name, " has ", as_text(lengths[name][row]), " frames but ",
                    first, " has ", as_text(lengths[first][row])])
            checks.append(check_rows(tf.not_equal(lengths[name], lengths[first]), filenames,
                                      video_ids, unequal))
    return checks


def dequantize_padded(codes, num_frames):
    """uint8 codes [B, T, size] -> float32 features, frames at or past `num_frames` set to 0.

    What the frame reader yields with `dequantize=True`; use it in a train/eval step that read
    with `dequantize=False` to get identical inputs.
    """
    valid = tf.sequence_mask(num_frames, tf.shape(codes)[1])[:, :, None]
    return tf.where(valid, records.dequantize(codes), 0.0)


# The 256 dequantized values, computed once with the reference arithmetic.
_DEQUANTIZED_CODES = records.dequantize_np(np.arange(256))


@tf.function(jit_compile=True)
def _dequantize_padded_fused(codes, num_frames):
    """Same values as `dequantize_padded`, bit for bit, in one XLA-fused pass over the batch.

    Unfused, the cast, scale, bias and mask each write the whole float32 batch (4x the CPU time
    of this). A table lookup rather than `q * scale + bias`, because XLA contracts that into a
    fused multiply-add, whose rounding differs from the reference in the last bit.
    Compiled once per shape: the frame reader calls it on [B, max_frames, size] only.
    """
    valid = tf.sequence_mask(num_frames, tf.shape(codes)[1])[:, :, None]
    values = tf.gather(tf.constant(_DEQUANTIZED_CODES), tf.cast(codes, tf.int32))
    return tf.where(valid, values, 0.0)


def _fixed_frames(frame_strings, size, max_frames):
    """[B, T] per-frame byte strings -> uint8 [B, max_frames, size] (truncated, zero padded)."""
    codes = tf.io.decode_raw(frame_strings[:, :max_frames], tf.uint8, fixed_length=size)
    missing = max_frames - tf.shape(codes)[1]
    codes = tf.pad(codes, [[0, 0], [0, missing], [0, 0]])
    return tf.ensure_shape(codes, [None, max_frames, size])


# ----------------------------------------------------------------------------------------------
# Frame level


class _ParsedVideos(typing.NamedTuple):
    context: dict     # parsed context features
    strings: dict     # feature name -> [B, T] per-frame byte strings ("" past a video's end)
    lengths: dict     # feature name -> int32 [B] frames in the record
    video_ids: tf.Tensor
    labels: tf.Tensor  # float32 multi-hot [B, V]
    checks: list       # ops that fail on bad input; outputs must depend on them


class _FrameParser:
    """Batched SequenceExample parse: features, num_frames, multi-hot labels, with checks."""

    def __init__(self, num_classes, feature_names, feature_sizes, extra_context=None):
        self.num_classes = num_classes
        self.feature_names = tuple(feature_names)
        self.feature_sizes = tuple(int(s) for s in feature_sizes)
        self.context_features = dict(_id_features(), **(extra_context or {}))
        self.sequence_features = _frame_features(self.feature_names)

    def parse(self, filenames, serialized):
        """Parses a batch of serialized SequenceExamples -> _ParsedVideos."""
        context, strings, lengths = tf.io.parse_sequence_example(
            serialized, context_features=self.context_features,
            sequence_features=self.sequence_features, example_names=filenames)
        video_ids, id_check = _video_ids(context, filenames)
        labels, label_check = _multi_hot(context["labels"], self.num_classes, filenames,
                                         video_ids)
        checks = [id_check, label_check] + _check_frames(
            strings, lengths, self.feature_names, self.feature_sizes, filenames, video_ids)
        lengths = {name: tf.cast(length, tf.int32) for name, length in lengths.items()}
        return _ParsedVideos(context, strings, lengths, video_ids, labels, checks)


def _check_feature_args(feature_names, feature_sizes):
    feature_names, feature_sizes = tuple(feature_names), tuple(feature_sizes)
    if not feature_names:
        raise ValueError("feature_names is empty")
    if len(feature_names) != len(feature_sizes):
        raise ValueError(f"feature_names {feature_names} and feature_sizes {feature_sizes} "
                         "differ in length")
    if len(set(feature_names)) != len(feature_names):
        raise ValueError(f"feature_names {feature_names} repeats a name")
    if any(int(size) <= 0 for size in feature_sizes):
        raise ValueError(f"feature_sizes {feature_sizes} must all be positive")
    return feature_names, tuple(int(size) for size in feature_sizes)


def _check_positive(name, value):
    if value is None or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _validator(parse_batch):
    """validate(filenames, records) for skip_corrupted: runs the real parse, raises when it does."""
    def validate(filenames, serialized):
        outputs = tf.nest.flatten(parse_batch(filenames, serialized))
        with tf.control_dependencies(outputs):
            return tf.constant(True)
    return validate


@dataclasses.dataclass(frozen=True)
class _Reading:
    """The options every reader shares: which records, in which order, and what to do when bad."""
    shuffle: bool
    num_epochs: typing.Optional[int]        # None: repeat forever
    seed: typing.Optional[int]
    skip_corrupted: bool
    num_parallel_reads: typing.Optional[int]
    shuffle_buffer_size: typing.Optional[int]
    shard: typing.Optional[typing.Tuple[int, int]] = None  # (index, count): this reader's share

    def __post_init__(self):
        for name in ("num_epochs", "num_parallel_reads", "shuffle_buffer_size"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.shard is not None:
            index, count = self.shard
            if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
                raise ValueError(f"shard must be (index, count) with 0 <= index < count, "
                                 f"got {self.shard!r}")

    @property
    def deterministic(self):
        return (not self.shuffle) or self.seed is not None

    def buffer_size(self, batch_size):
        return self.shuffle_buffer_size or 5 * batch_size  # the starter's queue capacity

    def named_records(self, file_pattern, parse_batch, batch_size):
        """(filename, record) pairs of this reader's share, shuffled at record level when asked.

        With `shard=(index, count)` the share is every count-th file from `index` when there are
        at least `count` files (only those are read), else every count-th record (every file is
        read, only the share goes on to be parsed); either way the `count` shares are disjoint
        and cover the data once per epoch (all readers must list the same files, and shuffle
        with the same seed for a record split).
        """
        files = list_files(file_pattern)
        index, count = self.shard or (0, 1)
        by_files = len(files) >= count
        named = named_records(files[index::count] if by_files else files, shuffle=self.shuffle,
                              seed=self.seed, num_epochs=self.num_epochs,
                              num_parallel_reads=self.num_parallel_reads,
                              deterministic=self.deterministic,
                              skip_corrupted=self.skip_corrupted,
                              validate=_validator(parse_batch))
        if not by_files:
            named = named.shard(count, index)
        if self.shuffle:
            named = named.shuffle(self.buffer_size(batch_size), seed=self.seed)
        return named

    def batches(self, file_pattern, parse_batch, batch_size, drop_remainder):
        """Batches of `batch_size` records, each parsed by `parse_batch(filenames, records)`."""
        _check_positive("batch_size", batch_size)
        return (self.named_records(file_pattern, parse_batch, batch_size)
                .batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE,
                       deterministic=self.deterministic)
                .map(parse_batch, num_parallel_calls=AUTOTUNE, deterministic=self.deterministic)
                .prefetch(AUTOTUNE))


def frame_batch_parser(num_classes=records.DEFAULT_NUM_CLASSES,
                       max_frames=records.DEFAULT_MAX_FRAMES,
                       feature_names=records.DEFAULT_FEATURE_NAMES,
                       feature_sizes=records.DEFAULT_FEATURE_SIZES, dequantize=True):
    """The frame reader's parse step: parse(filenames [B], serialized [B]) -> one batch.

    A pure function of the serialized SequenceExamples (and the names of their files, for the
    errors), which `frame_dataset` maps over its batches and a caller with records of its own
    (yt8m.beam_inference) calls directly: the batch of `frame_dataset`, with its checks.
    """
    feature_names, feature_sizes = _check_feature_args(feature_names, feature_sizes)
    _check_positive("max_frames", max_frames)
    _check_positive("num_classes", num_classes)
    parser = _FrameParser(num_classes, feature_names, feature_sizes)

    def parse_batch(filenames, serialized):
        videos = parser.parse(filenames, serialized)
        num_frames = tf.minimum(videos.lengths[feature_names[0]], max_frames)
        batch = {"id": videos.video_ids}
        for name, size in zip(feature_names, feature_sizes):
            codes = _fixed_frames(videos.strings[name], size, max_frames)
            batch[name] = _dequantize_padded_fused(codes, num_frames) if dequantize else codes
        batch["num_frames"] = num_frames
        batch["labels"] = videos.labels
        return after(videos.checks, batch)
    return parse_batch


def frame_dataset(file_pattern, batch_size, num_classes=records.DEFAULT_NUM_CLASSES,
                  max_frames=records.DEFAULT_MAX_FRAMES,
                  feature_names=records.DEFAULT_FEATURE_NAMES,
                  feature_sizes=records.DEFAULT_FEATURE_SIZES, shuffle=False, num_epochs=1, *,
                  dequantize=True, skip_corrupted=False, num_parallel_reads=None, seed=None,
                  drop_remainder=False, shuffle_buffer_size=None, frame_buckets=(), shard=None):
    """Frame-level SequenceExamples -> batches of dicts (see docs/design.md "Batches").

    Yields `id` string [B], one [B, max_frames, size] tensor per feature (float32 dequantized, or
    the uint8 codes with `dequantize=False`), `num_frames` int32 [B] and `labels` float32 [B, V].
    `num_epochs=None` repeats forever. Order is deterministic unless `shuffle` without `seed`.
    `frame_buckets` (bucket upper bounds, e.g. (60, 120, 180, 240, 300); empty: off) batches
    videos of similar length together and cuts the frame axis to the bucket's bound instead of
    max_frames (yt8m.data.bucketing): same values per video, less padding, another order.
    `shard=(index, count)` reads only this reader's share of the data (multi-worker training:
    see `_Reading.named_records`).
    """
    feature_names, feature_sizes = _check_feature_args(feature_names, feature_sizes)
    parse_batch = frame_batch_parser(num_classes, max_frames, feature_names, feature_sizes,
                                     dequantize)
    reading = _Reading(shuffle, num_epochs, seed, skip_corrupted, num_parallel_reads,
                       shuffle_buffer_size, shard)
    bounds = bucketing.parse_boundaries(frame_buckets, max_frames, flag_name="frame_buckets")
    if not bounds:
        return reading.batches(file_pattern, parse_batch, batch_size, drop_remainder)
    # Parse in full batches as usual (keeping the remainder: the buckets regroup every video).
    parsed = reading.batches(file_pattern, parse_batch, batch_size, drop_remainder=False)
    return bucketing.bucket_batches(parsed, batch_size, bounds, feature_names, drop_remainder)


# ----------------------------------------------------------------------------------------------
# Video level


def video_dataset(file_pattern, batch_size, num_classes=records.DEFAULT_NUM_CLASSES,
                  feature_names=records.VIDEO_FEATURE_NAMES,
                  feature_sizes=records.DEFAULT_FEATURE_SIZES, shuffle=False, num_epochs=1, *,
                  skip_corrupted=False, num_parallel_reads=None, seed=None, drop_remainder=False,
                  shuffle_buffer_size=None, shard=None):
    """Video-level Examples -> batches of {id, <feature> float32 [B, size], labels [B, V]}.

    `shard=(index, count)`: only this reader's share, as in `frame_dataset`."""
    feature_names, feature_sizes = _check_feature_args(feature_names, feature_sizes)
    _check_positive("num_classes", num_classes)
    features = _id_features()
    for name, size in zip(feature_names, feature_sizes):
        features[name] = tf.io.FixedLenFeature([size], tf.float32)

    def parse_batch(filenames, serialized):
        parsed = tf.io.parse_example(serialized, features, example_names=filenames)
        video_ids, id_check = _video_ids(parsed, filenames)
        labels, label_check = _multi_hot(parsed["labels"], num_classes, filenames, video_ids)
        batch = {"id": video_ids}
        batch.update({name: parsed[name] for name in feature_names})
        batch["labels"] = labels
        return after([id_check, label_check], batch)

    reading = _Reading(shuffle, num_epochs, seed, skip_corrupted, num_parallel_reads,
                       shuffle_buffer_size, shard)
    return reading.batches(file_pattern, parse_batch, batch_size, drop_remainder)


# ----------------------------------------------------------------------------------------------
# Segment level (2019)


def _segment_context():
    return {"segment_labels": tf.io.RaggedFeature(tf.int64),
            "segment_start_times": tf.io.RaggedFeature(tf.int64),
            "segment_scores": tf.io.RaggedFeature(tf.float32)}


def _rated_segments(context, lengths, filenames, video_ids, num_classes, segment_size):
    """The rated (video, start) segments of a batch of videos.

    Returns (video row [S], start [S], {"labels", "label_weights"} [S, V], checks): the
    (class, score) pairs are grouped by (video, start); segments come in video order, starts
    ascending.
    """
    classes = context["segment_labels"]
    starts = context["segment_start_times"]
    scores = context["segment_scores"]
    checks = []
    for name, other in (("segment_start_times", starts), ("segment_scores", scores)):
        def unequal(row, name=name, other=other):
            return tf.strings.join([
                "segment_labels has ", as_text(classes.row_lengths()[row]), " entries but ",
                name, " has ", as_text(other.row_lengths()[row])])
        checks.append(check_rows(tf.not_equal(classes.row_lengths(), other.row_lengths()),
                                 filenames, video_ids, unequal))
    with tf.control_dependencies(checks):
        pair_rows = tf.cast(classes.value_rowids(), tf.int64)
        pair_classes, pair_starts = classes.values, starts.values
    video_frames = tf.gather(tf.cast(lengths, tf.int64), pair_rows)
    bad_pairs = ((pair_classes < 0) | (pair_classes >= num_classes)
                 | (pair_starts < 0) | (pair_starts >= video_frames)
                 | (pair_starts % segment_size != 0))
    bad_rows = tf.math.unsorted_segment_max(tf.cast(bad_pairs, tf.int32), pair_rows,
                                            tf.shape(video_ids)[0]) > 0

    def problem(row):
        first = tf.argmax(tf.cast(bad_pairs & tf.equal(pair_rows, tf.cast(row, tf.int64)),
                                  tf.int32), output_type=tf.int32)
        return tf.strings.join([
            "rated segment (class ", as_text(pair_classes[first]), ", start ",
            as_text(pair_starts[first]), ") is invalid: classes must be in [0, ",
            str(num_classes), "), starts multiples of ", str(segment_size),
            " inside the video (", as_text(tf.gather(lengths, row)), " frames)"])
    checks.append(check_rows(bad_rows, filenames, video_ids, problem))

    with tf.control_dependencies(checks):
        # One key per (video, start); sorting keeps videos in order and starts ascending.
        stride = tf.reduce_max(tf.cast(lengths, tf.int64)) + 1
        keys = pair_rows * stride + pair_starts
    order = tf.argsort(keys, stable=True)
    unique_keys, pair_segment = tf.unique(tf.gather(keys, order))
    pair_classes = tf.gather(pair_classes, order)
    pair_scores = tf.gather(scores.values, order)
    indices = tf.stack([tf.cast(pair_segment, tf.int64), pair_classes], axis=1)
    shape = tf.stack([tf.cast(tf.size(unique_keys), tf.int64), num_classes])
    # max, not add: a pair listed twice still gives a 0/1 rating and weight.
    labels = tf.tensor_scatter_nd_max(tf.zeros(shape, tf.float32), indices, pair_scores)
    weights = tf.tensor_scatter_nd_max(tf.zeros(shape, tf.float32), indices,
                                       tf.ones_like(pair_scores))
    seg_rows = tf.cast(unique_keys // stride, tf.int32)
    seg_starts = tf.cast(unique_keys % stride, tf.int32)
    return seg_rows, seg_starts, {"labels": labels, "label_weights": weights}, checks


def _all_segments(lengths, labels, segment_size):
    """Every segment of every video: (video row [S], start [S], {"labels": video labels})."""
    starts = tf.ragged.range(0, lengths, segment_size)
    seg_rows = tf.cast(starts.value_rowids(), tf.int32)
    return seg_rows, starts.values, {"labels": tf.gather(labels, seg_rows)}, []


def _gather_segments(strings, rows, starts, lengths, size, segment_size, dequantize):
    """Frames [start, start + segment_size) of videos `rows` -> ([S, segment_size, size], num)."""
    # Pad with empty frames so a segment that runs past the end reads "" (decoded as zeros).
    padded = tf.pad(strings, [[0, 0], [0, segment_size]])
    frame_index = starts[:, None] + tf.range(segment_size)[None, :]
    indices = tf.stack([tf.broadcast_to(rows[:, None], tf.shape(frame_index)), frame_index], -1)
    codes = tf.io.decode_raw(tf.gather_nd(padded, indices), tf.uint8, fixed_length=size)
    codes = tf.ensure_shape(codes, [None, segment_size, size])
    num_frames = tf.clip_by_value(tf.gather(lengths, rows) - starts, 0, segment_size)
    return (dequantize_padded(codes, num_frames) if dequantize else codes), num_frames


def segment_batch_parser(num_classes=records.DEFAULT_NUM_CLASSES, mode="rated",
                         segment_size=records.SEGMENT_SIZE,
                         feature_names=records.DEFAULT_FEATURE_NAMES,
                         feature_sizes=records.DEFAULT_FEATURE_SIZES, *, max_frames=None,
                         dequantize=True):
    """The segment reader's parse step: parse(filenames [B], serialized [B]) -> the segments of
    those B videos, in video order, starts ascending (see `segment_dataset` for the keys).

    A pure function of the serialized SequenceExamples, which `segment_dataset` maps over its
    batches and yt8m.beam_inference calls on its own records.
    """
    if mode not in ("rated", "all"):
        raise ValueError(f"mode must be 'rated' or 'all', got {mode!r}")
    feature_names, feature_sizes = _check_feature_args(feature_names, feature_sizes)
    _check_positive("segment_size", segment_size)
    _check_positive("num_classes", num_classes)
    if max_frames is not None:
        if mode == "rated":
            raise ValueError("max_frames applies to mode='all' only: rated segments may lie "
                             "anywhere in the video")
        _check_positive("max_frames", max_frames)
    rated = mode == "rated"
    parser = _FrameParser(num_classes, feature_names, feature_sizes,
                          extra_context=_segment_context() if rated else None)

    def parse_segments(filenames, serialized):
        videos = parser.parse(filenames, serialized)
        strings, video_ids = videos.strings, videos.video_ids
        video_frames = videos.lengths[feature_names[0]]
        if max_frames is not None:  # frames past it must not leak into a segment's codes
            video_frames = tf.minimum(video_frames, max_frames)
            strings = {name: value[:, :max_frames] for name, value in strings.items()}
        if rated:
            seg_rows, seg_starts, targets, more_checks = _rated_segments(
                videos.context, video_frames, filenames, video_ids, num_classes, segment_size)
        else:
            seg_rows, seg_starts, targets, more_checks = _all_segments(
                video_frames, videos.labels, segment_size)
        batch = {"id": tf.gather(video_ids, seg_rows), "segment_start": seg_starts}
        for name, size in zip(feature_names, feature_sizes):
            batch[name], num_frames = _gather_segments(
                strings[name], seg_rows, seg_starts, video_frames, size, segment_size, dequantize)
        batch["num_frames"] = num_frames
        batch.update(targets)
        return after(videos.checks + more_checks, batch)
    return parse_segments


def segment_dataset(file_pattern, batch_size, num_classes=records.DEFAULT_NUM_CLASSES,
                    mode="rated", segment_size=records.SEGMENT_SIZE,
                    feature_names=records.DEFAULT_FEATURE_NAMES,
                    feature_sizes=records.DEFAULT_FEATURE_SIZES, shuffle=False, num_epochs=1, *,
                    max_frames=None, dequantize=True, skip_corrupted=False,
                    num_parallel_reads=None, seed=None, drop_remainder=False,
                    shuffle_buffer_size=None, shard=None):
    """Segment-level batches from frame-level SequenceExamples (2019 rated files).

    mode="rated": one element per rated segment (the rated (class, score) pairs grouped by start
      time): {id, segment_start, <features> [B, segment_size, size], num_frames, labels (the score
      at each rated class), label_weights (1 at the rated classes)}. Videos without ratings give
      nothing.
    mode="all": every `segment_size`-frame segment of every video (of its first `max_frames`
      frames when given): {id, segment_start, <features>, num_frames, labels (video labels)}.
    `num_frames` is `segment_size`, fewer where the video ends inside the segment. With
    `shuffle`, videos and then segments are shuffled. `shard=(index, count)`: only this reader's
    share of the videos, as in `frame_dataset`.
    """
    parse_segments = segment_batch_parser(num_classes, mode, segment_size, feature_names,
                                          feature_sizes, max_frames=max_frames,
                                          dequantize=dequantize)
    _check_positive("batch_size", batch_size)
    reading = _Reading(shuffle, num_epochs, seed, skip_corrupted, num_parallel_reads,
                       shuffle_buffer_size, shard)
    segments = (reading.named_records(file_pattern, parse_segments, batch_size)
                .batch(_SEGMENT_PARSE_VIDEOS, num_parallel_calls=AUTOTUNE,
                       deterministic=reading.deterministic)
                .map(parse_segments, num_parallel_calls=AUTOTUNE,
                     deterministic=reading.deterministic)
                .unbatch())
    if shuffle:
        segments = segments.shuffle(reading.buffer_size(batch_size), seed=seed)
    return segments.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)
