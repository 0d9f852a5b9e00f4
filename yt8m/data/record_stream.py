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
inside the pipeline, so the dataset stays a plain, checkpointable tf.data.Dataset. A file whose
reading stops early is read again from there by TensorFlow's own record reader (`_salvage`, in
Python: only files with a corrupted record take that path): a record whose payload checksum fails
is skipped alone, since its length field (checked by its own checksum) says where the next record
starts; only a broken length field or the file's end inside a record ends the file.

A file that cannot be read at all (no permission, a dangling link) is reported as such before
reading starts: that is no corruption.
"""
import concurrent.futures
import os
import struct

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
from tensorflow.python.lib.io import tf_record

from yt8m.core import errors
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
            # One file under two names (a link, two patterns) is read once.
            key = os.path.realpath(path) if "://" not in path else path
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files


def _check_readable(path):
    """A local file that cannot be opened is a read error, not a corrupted record."""
    if "://" in path:
        return
    try:
        with open(path, "rb"):
            pass
    except IsADirectoryError:
        pass  # reported by file_sizes
    except OSError as error:
        raise errors.MissingInputError(
            f"{path}: cannot be read ({error.strerror or error}): a read error, not a "
            "corrupted record") from None


def file_sizes(files):
    """Byte sizes of `files` (stat in parallel: remote file systems answer slowly, one by one)."""
    def stat(path):
        _check_readable(path)
        return tf.io.gfile.stat(path)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        stats = list(pool.map(stat, files))
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


def _salvage(filename, offset):
    """The records of `filename` from byte `offset` on, read by TensorFlow's record reader, which
    checks both checksums of each: (records, corrupted [bool per record: its payload checksum
    failed, the record is a placeholder], unreadable bytes left at the end).

    A failed payload checksum is reported at the payload's offset (the record's offset + 12, after
    the length field and its checksum): the length is then known good and says where the next
    record starts. A failed length checksum (reported at the record's offset) or a record running
    past the end of the file ends the reading. Other errors (permission, I/O) propagate."""
    filename, offset = filename.numpy().decode(), int(offset.numpy())
    size = tf.io.gfile.stat(filename).length
    reader = tf_record.tf_record_random_reader(filename)
    records, corrupted = [], []
    with tf.io.gfile.GFile(filename, "rb") as handle:
        while offset < size:
            try:
                record, offset_after = reader.read(offset)
            except tf.errors.DataLossError as error:
                if f"corrupted record at {offset + 12}" not in error.message:
                    break  # the length field is broken, or the file ends inside the record
                handle.seek(offset)
                (length,) = struct.unpack("<Q", handle.read(8))
                if offset + _TFRECORD_OVERHEAD_BYTES + length > size:
                    break
                records.append(b"")
                corrupted.append(True)
                offset += _TFRECORD_OVERHEAD_BYTES + length
                continue
            records.append(record)
            corrupted.append(False)
            offset = offset_after
    return (tf.constant(records, tf.string, [len(records)]),
            tf.constant(corrupted, tf.bool, [len(records)]), tf.constant(size - offset, tf.int64))


def _skipping_file(filename, size, validate):
    """(filename, record, is_end, skipped, bytes_left) rows of one file, invalid records dropped.

    `validate(filenames [1], records [1])` raises on a bad record; `ignore_errors` drops it and
    the gap in record indices counts it (a record whose checksum failed is dropped the same way).
    A last row (is_end) carries the count of records dropped since the previous row and the
    unreadable bytes left in the file.
    """
    def to_rows(records, bytes_left):
        is_end = _is_end(records)
        # A short read: the rest of the file, read again past each corrupted record.
        salvaged, corrupted, bytes_left = tf.cond(
            is_end & (bytes_left > 0),
            lambda: tuple(tf.py_function(_salvage, [filename, size - bytes_left],
                                         [tf.string, tf.bool, tf.int64])),
            lambda: (tf.zeros([0], tf.string), tf.zeros([0], tf.bool), bytes_left))
        salvaged.set_shape([None])
        corrupted.set_shape([None])
        bytes_left.set_shape([])
        end_row = tf.fill([tf.cast(is_end, tf.int32)], True)
        rows = tf.concat([records, salvaged, tf.fill(tf.shape(end_row), "")], 0)
        corrupted = tf.concat([tf.zeros_like(records, tf.bool), corrupted,
                               tf.logical_not(end_row)], 0)
        ends = tf.concat([tf.zeros_like(records, tf.bool), tf.zeros_like(salvaged, tf.bool),
                          end_row], 0)
        return rows, ends, tf.fill(tf.shape(rows), bytes_left), corrupted

    def check_row(index, row):
        record, is_end, bytes_left, corrupted = row
        ok = tf.cond(is_end, lambda: tf.constant(True),
                     lambda: tf.cond(corrupted, lambda: checks.raise_if(
                         tf.constant(True), lambda: tf.constant("corrupted record")),
                         lambda: validate(filename[None], record[None])))
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
        # `_salvage` (a py_function, state-less: it reads a file again) keeps the iterator
        # checkpointable only with this policy.
        options = tf.data.Options()
        options.experimental_external_state_policy = (
            tf.data.experimental.ExternalStatePolicy.IGNORE)
        named = named.with_options(options)
    return named
