"""Serialized records of many TFRecord files, each paired with the name of its file.

Carrying the file name with each record lets every later error name its file: the batched parsers
pass it as `example_names` (TensorFlow's own parse errors then print it) and our checks put it in
their messages.

A TFRecord framing error (bad CRC, truncated file) raises inside TFRecordDataset with a message that
does not name the file, and tf.data cannot catch it per file. So each file is read with
`ignore_errors` (a framing error ends the file early) and, at its end, the bytes consumed are
compared with the file's size: a short read is reported with the file name and byte offset. The
bytes are counted per chunk of records, not per record: a tf.data function call per record costs
more than reading the record.

`skip_corrupted=True` validates each record on its own (a per-record parse: slower, only in that
mode), drops the ones that fail and prints the running count of skipped records to stderr from
inside the pipeline, so the dataset stays a plain, checkpointable tf.data.Dataset.
"""
import concurrent.futures

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.data import checks

AUTOTUNE = tf.data.AUTOTUNE
_TFRECORD_OVERHEAD_BYTES = 16  # length (8) + length CRC (4) + data CRC (4) around each record
_READ_BUFFER_BYTES = 4 << 20
_CHUNK_RECORDS = 32  # records counted together (one tf.data function call per chunk)
_DEFAULT_READERS = 8


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


def file_sizes(files):
    """Byte sizes of `files` (stat in parallel: remote file systems answer slowly, one by one)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        stats = list(pool.map(tf.io.gfile.stat, files))
    for path, stat in zip(files, stats):
        if stat.is_directory:
            raise IsADirectoryError(f"{path} is a directory, not a TFRecord file")
    return [stat.length for stat in stats]


def _file_chunks(filename, size, process_chunk):
    """`process_chunk(records, bytes_left)` of each chunk of up to _CHUNK_RECORDS records of one
    file, then of an empty end chunk: `bytes_left` = the file's bytes not read yet after the
    chunk, 0 at the end unless a corrupted or truncated record stopped the reading.

    One tf.data function call per chunk, never per record (a call costs more than reading the
    record); batching and unbatching move the records, they are not copied.
    """
    chunks = (tf.data.TFRecordDataset(filename, buffer_size=_READ_BUFFER_BYTES).ignore_errors()
              .batch(_CHUNK_RECORDS)
              .concatenate(tf.data.Dataset.from_tensors(tf.zeros([0], tf.string))))

    def count_bytes(offset, records):
        record_bytes = tf.cast(tf.strings.length(records), tf.int64) + _TFRECORD_OVERHEAD_BYTES
        offset += tf.reduce_sum(record_bytes)
        return offset, process_chunk(records, size - offset)

    return chunks.scan(tf.constant(0, tf.int64), count_bytes)


def _is_end(records):
    return tf.equal(tf.size(records), 0)  # the only empty chunk is the end chunk


def _truncation_message(filename, bytes_left, size):
    return tf.strings.join([
        filename, ": corrupted or truncated record at byte ", checks.as_text(size - bytes_left),
        " of ", checks.as_text(size), " (TFRecord length/CRC check failed; the rest of the file "
        "cannot be read)"])


def _checked_file(filename, size):
    """(filename, record) of one file; a short read fails naming the file."""
    def check_end(records, bytes_left):
        ok = checks.raise_if(_is_end(records) & (bytes_left != 0),
                             lambda: _truncation_message(filename, bytes_left, size))
        return checks.after([ok], (tf.fill(tf.shape(records), filename), records))

    return _file_chunks(filename, size, check_end).unbatch()


def _skipping_file(filename, size, validate):
    """(filename, record, is_end, skipped, bytes_left) rows of one file, invalid records dropped.

    `validate(filenames [1], records [1])` raises on a bad record; `ignore_errors` drops it and
    the gap in record indices counts it. A last row (is_end) carries the count of records dropped
    since the previous row and the unreadable bytes left in the file.
    """
    def to_rows(records, bytes_left):
        is_end = _is_end(records)
        rows = tf.concat([records, tf.fill([tf.cast(is_end, tf.int32)], "")], 0)
        return rows, tf.fill(tf.shape(rows), is_end), tf.fill(tf.shape(rows), bytes_left)

    def check_row(index, row):
        record, is_end, bytes_left = row
        ok = tf.cond(is_end, lambda: tf.constant(True),
                     lambda: validate(filename[None], record[None]))
        return checks.after([ok], (index, record, is_end, bytes_left))

    def count_gaps(expected_index, row):
        index, record, is_end, bytes_left = row
        return index + 1, (filename, record, is_end, index - expected_index, bytes_left)

    return (_file_chunks(filename, size, to_rows).unbatch().enumerate()
            .map(check_row).ignore_errors()
            .scan(tf.constant(0, tf.int64), count_gaps))


def _report_skips(total, row):
    """Keeps the running total of skipped records; prints it to stderr whenever it grows."""
    filename, record, is_end, skipped, bytes_left = row
    truncated = is_end & (bytes_left > 0)
    new_total = total + skipped + tf.cast(truncated, tf.int64)
    reported = [
        checks.print_if(skipped > 0, lambda: tf.strings.join([
            "yt8m.data: skipped ", checks.as_text(skipped), " corrupted record(s) in ", filename,
            "; ", checks.as_text(new_total), " skipped so far"])),
        checks.print_if(truncated, lambda: tf.strings.join([
            "yt8m.data: skipped the unreadable last ", checks.as_text(bytes_left), " bytes of ",
            filename, " (corrupted or truncated record, counted as one); ",
            checks.as_text(new_total), " skipped so far"])),
    ]
    return new_total, checks.after(reported, (filename, record, is_end))


def named_records(files, *, shuffle=False, seed=None, num_epochs=1, num_parallel_reads=None,
                  deterministic=True, skip_corrupted=False, validate=None):
    """Dataset of (filename, serialized record) over `files`, read in parallel (interleaved).

    Files are shuffled (each epoch anew) when `shuffle`; `num_epochs=None` repeats forever.
    With `skip_corrupted`, `validate(filenames, records)` decides which records are corrupted.
    """
    if skip_corrupted and validate is None:
        raise ValueError("skip_corrupted=True needs a validate function")
    sizes = file_sizes(files)
    file_ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files, tf.string), tf.constant(sizes, tf.int64)))
    if shuffle:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    file_ds = file_ds.repeat(num_epochs)
    cycle_length = num_parallel_reads or min(len(files), _DEFAULT_READERS)
    if skip_corrupted:
        def per_file(filename, size):
            return _skipping_file(filename, size, validate)
    else:
        per_file = _checked_file
    named = file_ds.interleave(per_file, cycle_length=cycle_length, block_length=1,
                               num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if skip_corrupted:
        named = (named.scan(tf.constant(0, tf.int64), _report_skips)
                 .filter(lambda filename, record, is_end: tf.logical_not(is_end))
                 .map(lambda filename, record, is_end: (filename, record)))
    return named
