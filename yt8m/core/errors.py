"""Bad input told apart from bugs.

The project raises a `UserError` where it detects bad input (a flag, a file, a train dir, a video):
its message names what and where, and the command-line tools print it as one line
(`yt8m.core.cli`). Any other exception is a bug and keeps its traceback.

Each concrete type is also the built-in exception a library caller would expect (ValueError,
FileNotFoundError, FileExistsError, KeyError), so `except ValueError` keeps working.

Bad records are found inside tf.data, where Python exceptions cannot be raised: the readers' checks
(yt8m.data.checks) fail an assert op named `INPUT_CHECK_OP`, and TensorFlow's own parse ops fail
naming the record's file. `input_error_message` finds either in a TensorFlow error and returns the
message without the graph trace around it.
"""
import errno
import re
import sys


class UserError(Exception):
    """Bad input: the message says what was wrong and where (flag, file, train dir, video)."""


class InvalidInputError(UserError, ValueError):
    """A flag, file or record holds a value the project cannot use."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or directory the input names does not exist or lacks what it must hold."""


class OutputExistsError(UserError, FileExistsError):
    """An output exists and may not be replaced (no --overwrite, or it is not this tool's)."""


class OutputWriteError(UserError, OSError):
    """An output cannot be written: no permission, a read-only or full file system, a path
    through a file."""


class UnknownKeyError(UserError, KeyError):
    """A key (a video id, a name) the input asks for is not there."""

    def __str__(self):  # KeyError's str() would quote the whole message
        return str(self.args[0]) if self.args else ""


# OSError numbers of a file system that refuses a write (not a bug of the writer).
_WRITE_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                  errno.ENOTDIR, errno.EISDIR}
_TF_WRITE_REFUSED = ("PermissionDeniedError", "ResourceExhaustedError", "FailedPreconditionError",
                     "UnimplementedError")


def write_refused(error):
    """True when `error` is a file system refusing a write (permission, read-only or full file
    system, a file where a directory should be), not a bug."""
    if isinstance(error, OSError):
        return error.errno in _WRITE_REFUSED
    tf = sys.modules.get("tensorflow")
    return (tf is not None and isinstance(error, tf.errors.OpError)
            and type(error).__name__ in _TF_WRITE_REFUSED)


def describe(error):
    """The first line of an OSError's or a TensorFlow error's message, without TensorFlow's
    `{{function_node ...}}` prefix and `[Op:...]` suffix."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text, flags=re.S).strip()
    return text.splitlines()[0] if text else type(error).__name__


# The name of the assert op of the readers' checks: the mark of an input check in a TF error.
INPUT_CHECK_OP = "yt8m_input_check"

_CHECK_FAILED = re.compile(r"assertion failed: \[(?P<message>.*?)\]\s*\n\s*\[\[", re.S)
# A tf.data error: "... transformation with iterator: Iterator::Root::...: <message>\n\t [[node".
_ITERATOR_MESSAGE = re.compile(r"with iterator: Iterator::\S*: (?P<message>.*?)\s*\n\s*\[\[",
                               re.S)
_PARSE_NODE = re.compile(r"\{\{node [^}]*Parse(Sequence)?Example")
_NAMED_RECORD = re.compile(r"^Name: (?P<file>[^,]+), (?P<rest>.*)$", re.S)
_INVALID_PROTO = re.compile(r"^Invalid protocol message input, example id: (?P<file>.+)$", re.S)


def input_error_message(error):
    """The message of a TensorFlow error caused by bad input, else None.

    Bad input: a failed check of the readers (or of anything else that fails with the
    INPUT_CHECK_OP assert: the serving signatures) or a parse op of a tf.data pipeline (the
    readers pass each record's file name to the parser, so TensorFlow's message names it).
    """
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    text = error.message or ""
    if "{{node " in text and INPUT_CHECK_OP in text:
        match = _CHECK_FAILED.search(text)
        if match:
            return match.group("message")
    match = _ITERATOR_MESSAGE.search(text)
    if match and _PARSE_NODE.search(text):
        message = " ".join(match.group("message").split())
        named = _NAMED_RECORD.match(message)
        if named:
            return f"{named.group('file')}: {named.group('rest')}"
        named = _INVALID_PROTO.match(message)
        if named:
            return (f"{named.group('file')}: a record is not a serialized tf.train.Example or "
                    "SequenceExample (invalid protocol message)")
        if message.startswith("Could not parse example input"):  # it quotes the whole record
            return ("a record is not a serialized tf.train.Example (TensorFlow's Example parser "
                    "does not name the file)")
        return message
    return None
