"""yt8m.core.errors / cli: bad input is one line, a bug keeps its traceback."""
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.core import cli
from yt8m.core import errors
from yt8m.data import checks


def _first_error(dataset):
    with pytest.raises(tf.errors.OpError) as raised:
        for _ in dataset:
            pass
    return raised.value


def test_user_errors_are_the_builtin_types_callers_expect():
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.MissingInputError, FileNotFoundError)
    assert issubclass(errors.OutputExistsError, FileExistsError)
    assert issubclass(errors.OutputWriteError, OSError)
    assert issubclass(errors.UnknownKeyError, KeyError)
    assert str(errors.UnknownKeyError("video id 'x' is not in the cache")) == (
        "video id 'x' is not in the cache")  # not quoted as KeyError's str() would


def test_only_user_errors_become_one_line():
    assert cli.user_error_message(errors.InvalidInputError("--x=1: bad")) == "--x=1: bad"
    assert cli.user_error_message(errors.UnknownKeyError("no video 'a'")) == "no video 'a'"
    # Plain ValueError / KeyError / FileNotFoundError are bugs (or unchecked input): traceback.
    for bug in (ValueError("boom"), KeyError("max_frames"), FileNotFoundError("x"),
                tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2] vs [3]")):
        assert cli.user_error_message(bug) is None
    assert cli.user_error_message(RuntimeError("lost"), (RuntimeError,)) == "lost"


def test_a_failed_input_check_inside_tf_data_is_its_message():
    def check(x):
        message = lambda: tf.strings.join(["f.tfrecord: video v", checks.as_text(x), ": bad"])
        return checks.after([checks.raise_if(x == 2, message)], x)

    dataset = tf.data.Dataset.range(3).map(check)
    error = _first_error(dataset)
    assert "Iterator::" in error.message  # the graph trace around the message
    assert errors.input_error_message(error) == "f.tfrecord: video v2: bad"
    assert cli.user_error_message(error) == "f.tfrecord: video v2: bad"
    # An assert that is not an input check stays a bug.
    plain = tf.data.Dataset.range(3).map(
        lambda x: checks.after([tf.debugging.Assert(x < 2, ["internal"])], x))
    assert errors.input_error_message(_first_error(plain)) is None


def _parse_error(parse, record):
    dataset = tf.data.Dataset.from_tensors(([b"d/train0001.tfrecord"], [record])).map(parse)
    return errors.input_error_message(_first_error(dataset))


def test_a_parse_error_of_a_reader_names_the_file():
    features = {"mean_rgb": tf.io.FixedLenFeature([4], tf.float32)}
    example = tf.train.Example(features=tf.train.Features(feature={
        "mean_rgb": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.0]))}))

    def parse_example(names, records):
        return tf.io.parse_example(records, features, example_names=names)

    def parse_sequence_example(names, records):
        return tf.io.parse_sequence_example(
            records, sequence_features={"rgb": tf.io.FixedLenSequenceFeature([], tf.string)},
            example_names=names)[1]

    assert _parse_error(parse_example, example.SerializeToString()) == (
        "d/train0001.tfrecord: Key: mean_rgb, Index: 0. Number of float values != expected. "
        "Values size: 2 but output shape: [4]")
    assert _parse_error(parse_sequence_example, b"\x08\x96\x01garbage") == (
        "d/train0001.tfrecord: a record is not a serialized tf.train.Example or "
        "SequenceExample (invalid protocol message)")
    # The Example parser quotes the record instead of its file: not the 10 KB record.
    assert _parse_error(parse_example, b"garbage" * 2000) == (
        "a record is not a serialized tf.train.Example (TensorFlow's Example parser does not "
        "name the file)")


def test_exit_on_user_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        with cli.exit_on_user_error("tool.py"):
            raise errors.MissingInputError("--train_dir='x' has no model_flags.json")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "tool.py: error: --train_dir='x' has no model_flags.json\n"
    with pytest.raises(KeyError):  # a bug propagates, with its traceback
        with cli.exit_on_user_error("tool.py"):
            raise KeyError("max_frames")


def test_write_refusals_are_told_apart_from_bugs():
    refused = tf.errors.FailedPreconditionError(
        None, None, "{{function_node __wrapped__CreateSummaryFileWriter}} Not a directory "
        "[Op:CreateSummaryFileWriter] name: ")
    assert errors.write_refused(refused) and errors.describe(refused) == "Not a directory"
    assert errors.write_refused(OSError(28, "No space left on device"))
    assert not errors.write_refused(OSError(2, "No such file or directory"))
    assert not errors.write_refused(tf.errors.InvalidArgumentError(None, None, "shapes"))
    assert not errors.write_refused(ValueError("boom"))
