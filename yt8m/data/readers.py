"""tf.data readers for the YouTube-8M record formats (SPEC section 1).

Every reader is the same pipeline with a different parse step:

    list_files -> files read in parallel (interleave), each record paired with its file name
               -> [shuffle] -> batch of serialized records -> one batched parse + checks -> prefetch

Carrying the file name with each record is what lets every error name the file it comes from:
the batched parsers get it as `example_names` (TensorFlow's own parse errors then print it) and our
checks (byte lengths, label range, segment ratings) put it in their messages.

A TFRecord framing error (bad CRC, truncated file) cannot be caught per record by tf.data, so each
file is read with `ignore_errors` and the bytes consumed are compared with the file size at its end:
a short read is a corrupted file, reported with its name and the byte offset.

`skip_corrupted=True` validates each record on its own (slower, only in that mode), drops the bad
ones and prints a running count of skipped records to stderr (from inside the pipeline, so the
dataset stays a plain, checkpointable tf.data.Dataset).
"""
import concurrent.futures
import sys

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.data import records

AUTOTUNE = tf.data.AUTOTUNE
_TFRECORD_OVERHEAD_BYTES = 16  # length (8) + length CRC (4) + data CRC (4) around each record
_READ_BUFFER_BYTES = 4 << 20
_DEFAULT_READERS = 8
_SEGMENT_PARSE_VIDEOS = 32  # videos parsed together before their segments are re-batched


# ----------------------------------------------------------------------------------------------
# Files


def list_files(file_pattern):
    """Files matching `file_pattern` (a glob, a comma-separated list of globs, or a list of them).

    Each pattern's matches are sorted; a file matched twice is read once. Raises FileNotFoundError
    naming the first pattern that matches nothing.
    """
    if isinstance(file_pattern, (list, tuple)):
        patterns = [str(p) for p in file_pattern]
    else:
        patterns = str(file_pattern).split(",")
    patterns = [p.strip() for p in patterns if p.strip()]
    if not patterns:
        raise ValueError(f"file_pattern {file_pattern!r} contains no pattern")
    files, seen = [], set()
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"No file matches the pattern {pattern!r}")
        for path in matched:
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files


def _file_sizes(files):
    """Byte sizes of `files` (stat in parallel: remote file systems answer slowly, one by one)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        stats = list(pool.map(tf.io.gfile.stat, files))
    for path, stat in zip(files, stats):
        if stat.is_directory:
            raise IsADirectoryError(f"{path} is a directory, not a TFRecord file")
    return [stat.length for stat in stats]


# ----------------------------------------------------------------------------------------------
# Checks that raise (or report) with a message built only when they fail


def _raise_if(condition, make_message):
    """An op that fails with `make_message()` (a string tensor) when `condition` is true."""
    def fail():
        with tf.control_dependencies([tf.debugging.Assert(False, [make_message()])]):
            return tf.constant(False)
    return tf.cond(condition, fail, lambda: tf.constant(True))


def _after(checks, structure):
    """`structure` with every tensor made to wait for `checks` (so they are never pruned)."""
    with tf.control_dependencies(checks):
        return tf.nest.map_structure(tf.identity, structure)


def _describe_row(filenames, video_ids, row):
    return tf.strings.join([filenames[row], ": video ", video_ids[row], ": "])


def _check_rows(bad_rows, filenames, video_ids, describe_problem):
    """Fails on the first True row of `bad_rows` [B]: '<file>: video <id>: <problem(row)>'."""
    def message():
        row = tf.argmax(tf.cast(bad_rows, tf.int32), output_type=tf.int32)
        return tf.strings.join([_describe_row(filenames, video_ids, row), describe_problem(row)])
    return _raise_if(tf.reduce_any(bad_rows), message)


def _str(value):
    return tf.strings.as_string(value)


# ----------------------------------------------------------------------------------------------
# Records of many files, each paired with its file name


def _file_records(filename, size):
    """(record, is_end, offset, bytes_left) of one file; the extra end element reports a short read.

    TFRecordDataset stops at a corrupted or truncated record with an error that does not name the
    file; `ignore_errors` turns that into an early end, which the byte count exposes.
    """
    records = tf.data.TFRecordDataset(filename, buffer_size=_READ_BUFFER_BYTES).ignore_errors()
    marked = records.map(lambda record: (record, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(""), True)))

    def count_bytes(offset, element):
        record, is_end = element
        record_bytes = tf.cast(tf.strings.length(record), tf.int64) + _TFRECORD_OVERHEAD_BYTES
        next_offset = tf.where(is_end, offset, offset + record_bytes)
        return next_offset, (record, is_end, offset, size - offset)

    return marked.scan(tf.constant(0, tf.int64), count_bytes)


def _truncation_message(filename, offset, size):
    return tf.strings.join([
        filename, ": corrupted or truncated record at byte ", _str(offset), " of ", _str(size),
        " (TFRecord length/CRC check failed; nothing after it can be read)"])


def _checked_file(filename, size):
    """(filename, record) pairs of one file; a short read fails naming the file."""
    def check_end(record, is_end, offset, bytes_left):
        ok = _raise_if(is_end & (bytes_left != 0),
                       lambda: _truncation_message(filename, offset, size))
        return _after([ok], (record, is_end))
    return (_file_records(filename, size).map(check_end)
            .filter(lambda record, is_end: tf.logical_not(is_end))
            .map(lambda record, is_end: (filename, record)))


def _skipping_file(filename, size, validate):
    """(filename, record, is_end, skipped, bytes_left): invalid records dropped and counted.

    `validate(filenames [1], records [1])` raises on a bad record; `ignore_errors` drops it and
    the gap in record indices counts it. The end element carries the count before the end and
    the unreadable bytes (a framing error ends the file).
    """
    def check_one(index, element):
        record, is_end, _, bytes_left = element
        ok = tf.cond(is_end, lambda: tf.constant(True),
                     lambda: validate(filename[None], record[None]))
        return _after([ok], (index, record, is_end, bytes_left))

    def count_gaps(expected_index, element):
        index, record, is_end, bytes_left = element
        return index + 1, (filename, record, is_end, index - expected_index, bytes_left)

    return (_file_records(filename, size).enumerate().map(check_one).ignore_errors()
            .scan(tf.constant(0, tf.int64), count_gaps))


def _print_if(condition, make_message):
    """Prints `make_message()` to stderr when `condition` holds; returns an op to depend on."""
    def emit():
        with tf.control_dependencies([tf.print(make_message(), output_stream=sys.stderr)]):
            return tf.constant(True)
    return tf.cond(condition, emit, lambda: tf.constant(True))


def _report_skips(total, element):
    """Keeps the running total of skipped records and prints it to stderr whenever it grows."""
    filename, record, is_end, skipped, bytes_left = element
    truncated = is_end & (bytes_left > 0)
    new_total = total + skipped + tf.cast(truncated, tf.int64)
    reported = [
        _print_if(skipped > 0, lambda: tf.strings.join([
            "yt8m.data: skipped ", _str(skipped), " corrupted record(s) in ", filename, "; ",
            _str(new_total), " skipped so far"])),
        _print_if(truncated, lambda: tf.strings.join([
            "yt8m.data: skipped the unreadable last ", _str(bytes_left), " bytes of ", filename,
            " (corrupted or truncated record; counted as one); ", _str(new_total),
            " skipped so far"])),
    ]
    return new_total, _after(reported, (filename, record, is_end))


def _named_records(files, *, shuffle, seed, num_epochs, num_parallel_reads, deterministic,
                   skip_corrupted, validate):
    """Dataset of (filename, serialized record) over `files`, files read in parallel."""
    sizes = _file_sizes(files)
    file_ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files, tf.string), tf.constant(sizes, tf.int64)))
    if shuffle:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    file_ds = file_ds.repeat(num_epochs)
    cycle_length = num_parallel_reads or min(len(files), _DEFAULT_READERS)
    if skip_corrupted:
        per_file = lambda filename, size: _skipping_file(filename, size, validate)  # noqa: E731
    else:
        per_file = _checked_file
    named = file_ds.interleave(per_file, cycle_length=cycle_length, block_length=1,
                               num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if skip_corrupted:
        named = (named.scan(tf.constant(0, tf.int64), _report_skips)
                 .filter(lambda filename, record, is_end: tf.logical_not(is_end))
                 .map(lambda filename, record, is_end: (filename, record)))
    return named


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
        return tf.strings.join([filenames[row], ": record has no 'id' (or 'video_id') value"])
    return video_ids, _raise_if(tf.reduce_any(missing), message)


def _multi_hot(labels, num_classes, filenames, video_ids):
    """SparseTensor of class indices [B, ?] -> float32 multi-hot [B, num_classes], range checked."""
    out_of_range = (labels.values < 0) | (labels.values >= num_classes)
    bad_rows = tf.math.unsorted_segment_max(
        tf.cast(out_of_range, tf.int32), labels.indices[:, 0],
        tf.shape(video_ids)[0]) > 0

    def problem(row):
        in_row = tf.equal(labels.indices[:, 0], tf.cast(row, tf.int64)) & out_of_range
        value = tf.boolean_mask(labels.values, in_row)[0]
        return tf.strings.join(["label ", _str(value), " is outside [0, ", _str(num_classes),
                                ") (num_classes=", _str(num_classes), ")"])
    check = _check_rows(bad_rows, filenames, video_ids, problem)
    with tf.control_dependencies([check]):
        hot = tf.sparse.to_indicator(labels, num_classes)
    return tf.cast(hot, tf.float32), check


def _frame_features(feature_names):
    return {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in feature_names}


def _check_frames(strings, lengths, feature_names, feature_sizes, filenames, video_ids):
    """Every frame of every feature holds exactly `size` bytes; all features have equal lengths."""
    checks = []
    first = feature_names[0]
    for name, size in zip(feature_names, feature_sizes):
        byte_counts = tf.strings.length(strings[name])  # [B, T]; padding frames are ""
        valid = tf.sequence_mask(lengths[name], tf.shape(byte_counts)[1])
        wrong = valid & tf.not_equal(byte_counts, size)

        def problem(row, name=name, size=size, byte_counts=byte_counts, wrong=wrong):
            frame = tf.argmax(tf.cast(wrong[row], tf.int32), output_type=tf.int32)
            return tf.strings.join([
                "feature '", name, "' frame ", _str(frame), " has ", _str(byte_counts[row, frame]),
                " bytes, expected ", str(size)])
        checks.append(_check_rows(tf.reduce_any(wrong, axis=1), filenames, video_ids, problem))
        if name != first:
            def unequal(row, name=name):
                return tf.strings.join([
                    "feature '", name, "' has ", _str(lengths[name][row]), " frames but '", first,
                    "' has ", _str(lengths[first][row])])
            checks.append(_check_rows(tf.not_equal(lengths[name], lengths[first]), filenames,
                                      video_ids, unequal))
    return checks


def dequantize_padded(codes, num_frames):
    """uint8 codes [B, T, size] -> float32 features, frames at or past `num_frames` set to 0.

    What the frame reader yields with `dequantize=True`; use it in a train/eval step that read
    with `dequantize=False` to get identical inputs.
    """
    valid = tf.sequence_mask(num_frames, tf.shape(codes)[1])[:, :, None]
    return tf.where(valid, records.dequantize(codes), 0.0)


def _fixed_frames(frame_strings, size, max_frames):
    """[B, T] per-frame byte strings -> uint8 [B, max_frames, size] (truncated, zero padded)."""
    codes = tf.io.decode_raw(frame_strings[:, :max_frames], tf.uint8, fixed_length=size)
    missing = max_frames - tf.shape(codes)[1]
    codes = tf.pad(codes, [[0, 0], [0, missing], [0, 0]])
    return tf.ensure_shape(codes, [None, max_frames, size])


# ----------------------------------------------------------------------------------------------
# Frame level


class _FrameParser:
    """Batched SequenceExample parse: features, num_frames, multi-hot labels, with checks."""

    def __init__(self, num_classes, feature_names, feature_sizes, extra_context=None):
        self.num_classes = num_classes
        self.feature_names = tuple(feature_names)
        self.feature_sizes = tuple(int(s) for s in feature_sizes)
        self.context_features = dict(_id_features(), **(extra_context or {}))
        self.sequence_features = _frame_features(self.feature_names)

    def parse(self, filenames, serialized):
        """-> (context, frame strings, frame lengths, video ids, labels, checks)."""
        context, strings, lengths = tf.io.parse_sequence_example(
            serialized, context_features=self.context_features,
            sequence_features=self.sequence_features, example_names=filenames)
        video_ids, id_check = _video_ids(context, filenames)
        labels, label_check = _multi_hot(context["labels"], self.num_classes, filenames,
                                         video_ids)
        checks = [id_check, label_check] + _check_frames(
            strings, lengths, self.feature_names, self.feature_sizes, filenames, video_ids)
        lengths = {name: tf.cast(length, tf.int32) for name, length in lengths.items()}
        return context, strings, lengths, video_ids, labels, checks

    def validate(self, filenames, serialized):
        """True when the records parse and pass the checks; raises otherwise."""
        _, _, _, _, labels, checks = self.parse(filenames, serialized)
        with tf.control_dependencies(checks + [labels]):
            return tf.constant(True)


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


def _pipeline_options(batch_size, num_classes, shuffle, seed, shuffle_buffer_size):
    _check_positive("batch_size", batch_size)
    _check_positive("num_classes", num_classes)
    buffer = shuffle_buffer_size or 5 * batch_size  # the starter's queue capacity
    deterministic = (not shuffle) or seed is not None
    return buffer, deterministic


def frame_dataset(file_pattern, batch_size, num_classes=records.DEFAULT_NUM_CLASSES,
                  max_frames=records.DEFAULT_MAX_FRAMES,
                  feature_names=records.DEFAULT_FEATURE_NAMES,
                  feature_sizes=records.DEFAULT_FEATURE_SIZES, shuffle=False, num_epochs=1, *,
                  dequantize=True, skip_corrupted=False, num_parallel_reads=None, seed=None,
                  drop_remainder=False, shuffle_buffer_size=None):
    """Frame-level SequenceExamples -> batches of dicts (see docs/design.md "Batches").

    Yields `id` string [B], one [B, max_frames, size] tensor per feature (float32 dequantized, or
    the uint8 codes with `dequantize=False`), `num_frames` int32 [B] and `labels` float32 [B, V].
    `num_epochs=None` repeats forever. Order is deterministic unless `shuffle` without `seed`.
    """
    feature_names, feature_sizes = _check_feature_args(feature_names, feature_sizes)
    _check_positive("max_frames", max_frames)
    buffer, deterministic = _pipeline_options(batch_size, num_classes, shuffle, seed,
                                              shuffle_buffer_size)
    parser = _FrameParser(num_classes, feature_names, feature_sizes)

    def to_batch(filenames, serialized):
        _, strings, lengths, video_ids, labels, checks = parser.parse(filenames, serialized)
        num_frames = tf.minimum(lengths[feature_names[0]], max_frames)
        batch = {"id": video_ids}
        for name, size in zip(feature_names, feature_sizes):
            codes = _fixed_frames(strings[name], size, max_frames)
            batch[name] = dequantize_padded(codes, num_frames) if dequantize else codes
        batch["num_frames"] = num_frames
        batch["labels"] = labels
        return _after(checks, batch)

    named = _named_records(list_files(file_pattern), shuffle=shuffle, seed=seed,
                           num_epochs=num_epochs, num_parallel_reads=num_parallel_reads,
                           deterministic=deterministic, skip_corrupted=skip_corrupted,
                           validate=parser.validate)
    if shuffle:
        named = named.shuffle(buffer, seed=seed)
    return (named.batch(batch_size, drop_remainder=drop_remainder)
            .map(to_batch, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
            .prefetch(AUTOTUNE))


# ----------------------------------------------------------------------------------------------
# Video level


def video_dataset(file_pattern, batch_size, num_classes=records.DEFAULT_NUM_CLASSES,
                  feature_names=records.VIDEO_FEATURE_NAMES,
                  feature_sizes=records.DEFAULT_FEATURE_SIZES, shuffle=False, num_epochs=1, *,
                  skip_corrupted=False, num_parallel_reads=None, seed=None, drop_remainder=False,
                  shuffle_buffer_size=None):
    """Video-level Examples -> batches of {id, <feature> float32 [B, size], labels [B, V]}."""
    feature_names, feature_sizes = _check_feature_args(feature_names, feature_sizes)
    buffer, deterministic = _pipeline_options(batch_size, num_classes, shuffle, seed,
                                              shuffle_buffer_size)
    features = _id_features()
    for name, size in zip(feature_names, feature_sizes):
        features[name] = tf.io.FixedLenFeature([size], tf.float32)

    def parse(filenames, serialized):
        parsed = tf.io.parse_example(serialized, features, example_names=filenames)
        video_ids, id_check = _video_ids(parsed, filenames)
        labels, label_check = _multi_hot(parsed["labels"], num_classes, filenames, video_ids)
        batch = {"id": video_ids}
        batch.update({name: parsed[name] for name in feature_names})
        batch["labels"] = labels
        return batch, [id_check, label_check]

    def to_batch(filenames, serialized):
        batch, checks = parse(filenames, serialized)
        return _after(checks, batch)

    def validate(filenames, serialized):
        batch, checks = parse(filenames, serialized)
        with tf.control_dependencies(checks + [batch["labels"]]):
            return tf.constant(True)

    named = _named_records(list_files(file_pattern), shuffle=shuffle, seed=seed,
                           num_epochs=num_epochs, num_parallel_reads=num_parallel_reads,
                           deterministic=deterministic, skip_corrupted=skip_corrupted,
                           validate=validate)
    if shuffle:
        named = named.shuffle(buffer, seed=seed)
    return (named.batch(batch_size, drop_remainder=drop_remainder)
            .map(to_batch, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
            .prefetch(AUTOTUNE))


# ----------------------------------------------------------------------------------------------
# Segment level (2019)


def _segment_context():
    return {"segment_labels": tf.io.RaggedFeature(tf.int64),
            "segment_start_times": tf.io.RaggedFeature(tf.int64),
            "segment_scores": tf.io.RaggedFeature(tf.float32)}


def _gather_segments(strings, rows, starts, lengths, size, segment_size, dequantize):
    """Frames [starts, starts + segment_size) of video `rows` -> [S, segment_size, size]."""
    # Pad with empty frames so a segment that runs past the end reads "" (decoded as zeros).
    padded = tf.pad(strings, [[0, 0], [0, segment_size]])
    frame_index = starts[:, None] + tf.range(segment_size)[None, :]
    indices = tf.stack([tf.broadcast_to(rows[:, None], tf.shape(frame_index)), frame_index], -1)
    codes = tf.io.decode_raw(tf.gather_nd(padded, indices), tf.uint8, fixed_length=size)
    codes = tf.ensure_shape(codes, [None, segment_size, size])
    num_frames = tf.clip_by_value(tf.gather(lengths, rows) - starts, 0, segment_size)
    return (dequantize_padded(codes, num_frames) if dequantize else codes), num_frames


def segment_dataset(file_pattern, batch_size, num_classes=records.DEFAULT_NUM_CLASSES,
                    mode="rated", segment_size=records.SEGMENT_SIZE,
                    feature_names=records.DEFAULT_FEATURE_NAMES,
                    feature_sizes=records.DEFAULT_FEATURE_SIZES, shuffle=False, num_epochs=1, *,
                    max_frames=None, dequantize=True, skip_corrupted=False,
                    num_parallel_reads=None, seed=None, drop_remainder=False,
                    shuffle_buffer_size=None):
    """Segment-level batches from frame-level SequenceExamples (2019 rated files).

    mode="rated": one element per rated segment (the rated (class, score) pairs grouped by start
      time): {id, segment_start, <features> [B, segment_size, size], num_frames, labels (the score
      at each rated class), label_weights (1 at the rated classes)}. Videos without ratings give
      nothing.
    mode="all": every `segment_size`-frame segment of every video (the first `max_frames` frames
      when given): {id, segment_start, <features>, num_frames, labels (the video-level labels)}.
    `num_frames` is `segment_size`, fewer where the video ends inside the segment.
    """
    if mode not in ("rated", "all"):
        raise ValueError(f"mode must be 'rated' or 'all', got {mode!r}")
    feature_names, feature_sizes = _check_feature_args(feature_names, feature_sizes)
    _check_positive("segment_size", segment_size)
    if max_frames is not None:
        if mode == "rated":
            raise ValueError("max_frames applies to mode='all' only: rated segments may lie "
                             "anywhere in the video")
        _check_positive("max_frames", max_frames)
    buffer, deterministic = _pipeline_options(batch_size, num_classes, shuffle, seed,
                                              shuffle_buffer_size)
    rated = mode == "rated"
    parser = _FrameParser(num_classes, feature_names, feature_sizes,
                          extra_context=_segment_context() if rated else None)

    def rated_segments(context, lengths, filenames, video_ids):
        """Unique (video, start) pairs, their label/weight rows and the checks on the ratings."""
        classes = context["segment_labels"]
        starts = context["segment_start_times"]
        scores = context["segment_scores"]
        checks = []
        for name, other in (("segment_start_times", starts), ("segment_scores", scores)):
            def unequal(row, name=name, other=other):
                return tf.strings.join([
                    "'segment_labels' has ", _str(classes.row_lengths()[row]), " entries but '",
                    name, "' has ", _str(other.row_lengths()[row])])
            checks.append(_check_rows(tf.not_equal(classes.row_lengths(), other.row_lengths()),
                                      filenames, video_ids, unequal))
        with tf.control_dependencies(checks):
            pair_rows = classes.value_rowids()
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
                "rated segment (class ", _str(pair_classes[first]), ", start ",
                _str(pair_starts[first]), ") is invalid: classes must be in [0, ",
                str(num_classes), "), starts multiples of ", str(segment_size),
                " inside the video's ", _str(tf.gather(lengths, row)), " frames"])
        checks.append(_check_rows(bad_rows, filenames, video_ids, problem))
        with tf.control_dependencies(checks[-1:]):
            # One key per (video, start); sorted, so videos stay in order and starts ascend.
            stride = tf.reduce_max(tf.cast(lengths, tf.int64)) + 1
            order = tf.argsort(pair_rows * stride + pair_starts, stable=True)
        sorted_keys = tf.gather(pair_rows * stride + pair_starts, order)
        pair_classes = tf.gather(pair_classes, order)
        pair_scores = tf.gather(scores.values, order)
        unique_keys, pair_segment = tf.unique(sorted_keys)
        num_segments = tf.size(unique_keys)
        indices = tf.stack([tf.cast(pair_segment, tf.int64), pair_classes], axis=1)
        shape = tf.stack([tf.cast(num_segments, tf.int64), num_classes])
        # max, not add: a pair listed twice still gives a 0/1 rating and weight.
        labels = tf.tensor_scatter_nd_max(tf.zeros(shape, tf.float32), indices, pair_scores)
        weights = tf.tensor_scatter_nd_max(tf.zeros(shape, tf.float32), indices,
                                           tf.ones_like(pair_scores))
        seg_rows = tf.cast(unique_keys // stride, tf.int32)
        seg_starts = tf.cast(unique_keys % stride, tf.int32)
        return seg_rows, seg_starts, {"labels": labels, "label_weights": weights}, checks

    def all_segments(lengths, labels):
        starts = tf.ragged.range(0, lengths, segment_size)
        seg_rows = tf.cast(starts.value_rowids(), tf.int32)
        return seg_rows, starts.values, {"labels": tf.gather(labels, seg_rows)}, []

    def to_segments(filenames, serialized):
        context, strings, lengths, video_ids, labels, checks = parser.parse(filenames, serialized)
        video_frames = lengths[feature_names[0]]
        if max_frames is not None:  # frames past it must not leak into a segment's codes
            video_frames = tf.minimum(video_frames, max_frames)
            strings = {name: value[:, :max_frames] for name, value in strings.items()}
        if rated:
            seg_rows, seg_starts, targets, more_checks = rated_segments(
                context, video_frames, filenames, video_ids)
        else:
            seg_rows, seg_starts, targets, more_checks = all_segments(video_frames, labels)
        batch = {"id": tf.gather(video_ids, seg_rows), "segment_start": seg_starts}
        for name, size in zip(feature_names, feature_sizes):
            batch[name], num_frames = _gather_segments(
                strings[name], seg_rows, seg_starts, video_frames, size, segment_size, dequantize)
        batch["num_frames"] = num_frames
        batch.update(targets)
        return _after(checks + more_checks, batch)

    named = _named_records(list_files(file_pattern), shuffle=shuffle, seed=seed,
                           num_epochs=num_epochs, num_parallel_reads=num_parallel_reads,
                           deterministic=deterministic, skip_corrupted=skip_corrupted,
                           validate=parser.validate)
    if shuffle:
        named = named.shuffle(buffer, seed=seed)
    segments = (named.batch(_SEGMENT_PARSE_VIDEOS)
                .map(to_segments, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
                .unbatch())
    if shuffle:
        segments = segments.shuffle(buffer, seed=seed)
    return (segments.batch(batch_size, drop_remainder=drop_remainder)
            .prefetch(AUTOTUNE))
