"""The segment submission CSV (SPEC 3) and the class whitelist file (`segment_label_ids.csv`).

    Class,Segments
    <cls>,<video id>:<start> <video id>:<start> ...      (best segment first)

Writing and reading live together so the two sides cannot drift apart. Reading avoids the
starter's known bugs: the header line is checked (not parsed as a class), video ids are text
(never b'...' byte strings that match nothing) and every segment of a line counts, the last one
included.
"""
import urllib.request

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.data import records
from yt8m.core import files
from yt8m.core import errors

SEGMENT_SUBMISSION_HEADER = "Class,Segments"


class WhitelistDownloadError(errors.InvalidInputError):
    pass


def read_segment_whitelist(path, flag="--segment_label_ids", num_classes=None):
    """segment_label_ids.csv (header `Index`, one class index a line) -> sorted tuple of classes."""
    if not tf.io.gfile.exists(path):
        raise errors.MissingInputError(f"{flag}={path!r}: no such file")
    with tf.io.gfile.GFile(path) as handle:
        return parse_segment_whitelist(handle.read(), f"{flag}={path!r}", num_classes)


def load_segment_whitelist(location, flag, num_classes=None, timeout_secs=60):
    """The whitelist at a path or an http(s) URL (the starter's --segment_label_ids_file)."""
    if not location.startswith(("http://", "https://")):
        return read_segment_whitelist(location, flag, num_classes)
    try:
        with urllib.request.urlopen(location, timeout=timeout_secs) as response:
            data = response.read()
    except OSError as error:  # URLError, HTTPError and timeouts are OSErrors
        raise WhitelistDownloadError(
            f"{flag}={location!r}: cannot fetch it ({error}); give a reachable URL or the path "
            "of a local copy") from None
    return parse_segment_whitelist(data.decode("utf-8", errors="replace"),
                                   f"{flag}={location!r}", num_classes)


def parse_segment_whitelist(text, where, num_classes=None):
    """The text of a whitelist CSV -> sorted tuple of classes; errors start with `where`."""
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip()]
    if not lines or lines[0][1] != records.SEGMENT_WHITELIST_HEADER:
        first = lines[0][1] if lines else "(empty file)"
        raise errors.InvalidInputError(f"{where}: the first line must be the header "
                                       f"{records.SEGMENT_WHITELIST_HEADER!r}, got {first!r}")
    classes = set()
    for number, line in lines[1:]:
        try:
            cls = int(line)
        except ValueError:
            raise errors.InvalidInputError(
                f"{where} line {number}: {line!r} is not a class index") from None
        if cls < 0 or (num_classes is not None and cls >= num_classes):
            raise errors.InvalidInputError(f"{where} line {number}: class {cls} is outside "
                                           f"[0, num_classes={num_classes})")
        classes.add(cls)
    if not classes:
        raise errors.InvalidInputError(f"{where} lists no class")
    return tuple(sorted(classes))


def row_classes(ranked_classes, whitelist=None):
    """The classes that get a row, ascending: every whitelisted class (an empty row when no
    segment was ranked in it), else every class in which a segment was ranked."""
    return tuple(sorted(whitelist if whitelist is not None else ranked_classes))


def format_segment_row(cls, segments):
    """`<cls>,<id>:<start> <id>:<start> ...` from (video_id, start) pairs, best first."""
    return f"{int(cls)}," + " ".join(f"{video_id}:{int(start)}" for video_id, start in segments)


def ranked_rows(ranked, classes, video_text):
    """(class, [(video id, start), ...]) rows for `classes`, best segment first, from a
    yt8m.segments.top_k.PerClassTopK whose videos `video_text` turns into ids."""
    for cls in classes:
        _, videos, starts = ranked.top(cls)
        yield cls, [(video_text(video), int(start)) for video, start in zip(videos, starts)]


def write_segment_submission(output_file, rows):
    """Writes the CSV atomically from (class, [(video_id, start), ...]) rows, in the given order.

    Returns the number of rows written.
    """
    if not output_file:
        raise errors.InvalidInputError(
            "--output_file is empty: give the path of the segment CSV to write")
    count = 0
    with files.atomic_output(output_file) as handle:
        handle.write(SEGMENT_SUBMISSION_HEADER + "\n")
        for cls, segments in rows:
            handle.write(format_segment_row(cls, segments) + "\n")
            count += 1
    return count


def _parse_segment(token, path, number):
    video_id, colon, start = token.rpartition(":")
    if not colon or not video_id:
        raise errors.InvalidInputError(f"{path} line {number}: {token!r} is not <video id>:<start>")
    try:
        start = int(start)
    except ValueError:
        raise errors.InvalidInputError(
            f"{path} line {number}: segment {token!r} has a start time that is not "
            "an integer") from None
    if start < 0 or start % records.SEGMENT_SIZE:
        raise errors.InvalidInputError(
            f"{path} line {number}: segment {token!r} must start at a multiple of "
            f"{records.SEGMENT_SIZE} >= 0")
    return video_id, start


def read_segment_submission(path):
    """The CSV -> {class: [(video_id, start), ...]} in file order (best first).

    Errors name the file and line: a missing or wrong header, a line without a comma, a class
    that is not an integer or is listed twice, a segment that is not `<id>:<start>`.
    """
    if not tf.io.gfile.exists(path):
        raise errors.MissingInputError(f"--submission_file={path!r}: no such file")
    submission = {}
    seen_header = False
    with tf.io.gfile.GFile(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if number == 1:
                if line.strip() != SEGMENT_SUBMISSION_HEADER:
                    raise errors.InvalidInputError(f"{path} line 1: expected the header "
                                                   f"{SEGMENT_SUBMISSION_HEADER!r}, got {line!r}")
                seen_header = True
                continue
            if not line.strip():
                continue
            cls_text, comma, segments = line.partition(",")
            if not comma:
                raise errors.InvalidInputError(
                    f"{path} line {number}: expected <class>,<segments>, got "
                    f"{line[:80]!r}")
            try:
                cls = int(cls_text)
            except ValueError:
                raise errors.InvalidInputError(
                    f"{path} line {number}: class {cls_text!r} is not an "
                    "integer") from None
            if cls in submission:
                raise errors.InvalidInputError(f"{path} line {number}: class {cls} is listed twice")
            submission[cls] = [_parse_segment(token, path, number) for token in segments.split()]
    if not seen_header:
        raise errors.InvalidInputError(
            f"{path} is empty: expected the header {SEGMENT_SUBMISSION_HEADER!r}")
    return submission
