"""In-pipeline checks for tf.data parse functions: fail (or print) with a message naming the file.

The message tensors are built inside a `tf.cond` branch, so the string formatting runs only when a
check fails; the fast path pays for one boolean reduction per check.
"""
import sys

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core import errors


def as_text(value):
    """A numeric tensor as a string tensor (for messages)."""
    return tf.strings.as_string(value)


def raise_if(condition, make_message):
    """An op that fails with InvalidArgumentError `make_message()` when `condition` holds (its
    assert op's name marks the error as bad input for yt8m.core.errors)."""
    def fail():
        with tf.control_dependencies([tf.debugging.Assert(False, [make_message()],
                                                          name=errors.INPUT_CHECK_OP)]):
            return tf.constant(False)
    return tf.cond(condition, fail, lambda: tf.constant(True))


def print_if(condition, make_message):
    """Prints `make_message()` to stderr when `condition` holds."""
    def emit():
        with tf.control_dependencies([tf.print(make_message(), output_stream=sys.stderr)]):
            return tf.constant(True)
    return tf.cond(condition, emit, lambda: tf.constant(True))


def after(checks, structure):
    """`structure` with every tensor made to wait for `checks`, so they run and are not pruned."""
    with tf.control_dependencies(checks):
        return tf.nest.map_structure(tf.identity, structure)


def check_rows(bad_rows, filenames, video_ids, describe_problem):
    """Fails on the first True entry of `bad_rows` [B]: '<file>: video <id>: <problem(row)>'."""
    def message():
        row = tf.argmax(tf.cast(bad_rows, tf.int32), output_type=tf.int32)
        return tf.strings.join([filenames[row], ": video ", video_ids[row], ": ",
                                describe_problem(row)])
    return raise_if(tf.reduce_any(bad_rows), message)
