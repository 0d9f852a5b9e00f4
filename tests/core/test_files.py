"""yt8m.core.files: a result file or directory appears whole or not at all."""
import json
import os
import re

import pytest

import yt8m  # noqa: F401
from yt8m.core import errors
from yt8m.core import files


def _names(directory):
    return sorted(os.listdir(directory))


def test_whole_file_writes(tmp_path):
    files.write_text_atomically(str(tmp_path / "a.txt"), "one\ntwo\n")
    files.write_bytes_atomically(str(tmp_path / "b.bin"), b"\x00\xff")
    files.write_json_atomically(str(tmp_path / "sub" / "c.json"), {"b": 1, "a": [2]})
    assert (tmp_path / "a.txt").read_text() == "one\ntwo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert (tmp_path / "sub" / "c.json").read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert files.read_json(str(tmp_path / "sub" / "c.json")) == {"a": [2], "b": 1}
    assert _names(tmp_path) == ["a.txt", "b.bin", "sub"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with files.atomic_output(str(path)) as handle:
            handle.write("half of the new")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert _names(tmp_path) == ["result.csv"]


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    target = tmp_path / "shard.tfrecord"
    with files.atomic_path(str(target)) as temp_path:
        assert os.path.dirname(temp_path) == str(tmp_path)
        assert os.path.basename(temp_path).startswith(".shard.tfrecord.tmp-")
        with open(temp_path, "w") as handle:
            handle.write("records")
        assert not target.exists()  # not before the writer is done
    assert target.read_text() == "records"
    with pytest.raises(ValueError):
        with files.atomic_path(str(tmp_path / "other")) as temp_path:
            with open(temp_path, "w") as handle:
                handle.write("partial")
            raise ValueError("bad record")
    assert _names(tmp_path) == ["shard.tfrecord"]


def test_atomic_directory_creates_and_replaces(tmp_path):
    output = tmp_path / "export"
    with files.atomic_directory(str(output)) as temp_dir:
        assert _names(temp_dir) == [] and not output.exists()
        with open(os.path.join(temp_dir, "model.pb"), "w") as handle:
            handle.write("v1")
    assert _names(output) == ["model.pb"]
    with files.atomic_directory(str(output)) as temp_dir:
        with open(os.path.join(temp_dir, "report.json"), "w") as handle:
            json.dump({"v": 2}, handle)
        assert (output / "model.pb").read_text() == "v1"  # the old one stays until the end
    assert _names(output) == ["report.json"]
    assert _names(tmp_path) == ["export"]


def test_a_failed_directory_write_leaves_the_old_directory(tmp_path):
    output = tmp_path / "cache"
    output.mkdir()
    (output / "keep").write_text("old")
    with pytest.raises(KeyError):
        with files.atomic_directory(str(output)) as temp_dir:
            with open(os.path.join(temp_dir, "new"), "w") as handle:
                handle.write("half")
            raise KeyError("interrupted")
    assert _names(output) == ["keep"] and _names(tmp_path) == ["cache"]


# ---------------------------------------------------------------- never through a link


def _victim(tmp_path):
    """A directory outside every output, with a file that must survive."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    return victim


def test_remove_never_follows_a_link(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "link").symlink_to(victim)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "inner_link").symlink_to(victim)  # a link inside the tree, too
    (tree / "file").write_text("x")
    files.remove(str(tree))
    files.remove(str(tmp_path / "link"))
    files.remove(str(tmp_path / "nothing"))  # nothing there: nothing to do
    assert _names(tmp_path) == ["victim"]
    assert (victim / "precious.txt").read_text() == "keep me"


def test_replacing_a_linked_directory_replaces_the_link(tmp_path):
    victim = _victim(tmp_path)
    output = tmp_path / "export"
    output.symlink_to(victim)
    with files.atomic_directory(str(output)) as temp_dir:
        with open(os.path.join(temp_dir, "model.pb"), "w") as handle:
            handle.write("new")
    assert not output.is_symlink() and _names(output) == ["model.pb"]
    assert _names(victim) == ["precious.txt"]
    assert _names(tmp_path) == ["export", "victim"]


def test_replacing_a_linked_file_replaces_the_link(tmp_path):
    victim = _victim(tmp_path)
    output = tmp_path / "submission.csv"
    output.symlink_to(victim / "precious.txt")
    files.write_text_atomically(str(output), "rows\n")
    assert not output.is_symlink() and output.read_text() == "rows\n"
    assert (victim / "precious.txt").read_text() == "keep me"


# ---------------------------------------------------------------- outputs against inputs


def test_an_output_that_is_holds_or_lies_in_an_input_is_refused(tmp_path):
    member = tmp_path / "runs" / "member"
    member.mkdir(parents=True)
    (tmp_path / "alias").symlink_to(member)
    inputs = [("--members", str(member))]
    for output, relation in ((member, "is"), (tmp_path / "alias", "is"),
                             (tmp_path / "runs", "contains"), (tmp_path, "contains"),
                             (member / "export", "lies inside"),
                             (tmp_path / "alias" / "export", "lies inside")):
        with pytest.raises(errors.InvalidInputError) as error:
            files.check_output_path(str(output), "--output_dir", inputs)
        assert str(error.value) == (
            f"--output_dir={str(output)!r} {relation} the input {str(member)!r} (--members): "
            "writing it would destroy or change an input; choose an output outside the inputs")
    # Beside the input, or a name that only starts like it: fine.
    for output in (tmp_path / "runs" / "member2", tmp_path / "runs" / "export"):
        files.check_output_path(str(output), "--output_dir", inputs)


def test_overwrite_replaces_only_an_earlier_output_of_the_tool(tmp_path):
    markers = ("saved_model.pb", "export_report.json")
    earlier, other, empty = tmp_path / "earlier", tmp_path / "other", tmp_path / "empty"
    earlier.mkdir(), other.mkdir(), empty.mkdir()
    for name in markers:
        (earlier / name).write_text("")
    (earlier / "variables").mkdir()
    (other / "notes.txt").write_text("mine")
    (tmp_path / "a_file").write_text("")

    def check(path, overwrite=True):
        files.check_replaceable_directory(str(path), "--output_dir", overwrite, markers,
                                          "export_ensemble.py")

    check(tmp_path / "new", overwrite=False)  # nothing there yet
    check(earlier)
    check(empty)
    with pytest.raises(errors.OutputExistsError, match=r"^--output_dir='.*earlier' already "
                       r"exists; pass --overwrite to replace it$"):
        check(earlier, overwrite=False)
    with pytest.raises(FileExistsError, match=re.escape(
            f"--output_dir={str(other)!r} is not a directory written by export_ensemble.py (it "
            "has no saved_model.pb, export_report.json); --overwrite replaces only such a "
            "directory")):
        check(other)
    with pytest.raises(errors.OutputExistsError, match="is a file, not a directory written by"):
        check(tmp_path / "a_file")


def test_output_file_checks(tmp_path):
    data = tmp_path / "test0000.tfrecord"
    data.write_bytes(b"records")
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    (train_dir / "model_flags.json").write_text("{}")
    inputs = [("--input_data_pattern", str(data)), ("--train_dir", str(train_dir))]
    output = tmp_path / "submission.csv"
    files.check_output_file(str(output), "--output_file", False, inputs)
    output.write_text("earlier\n")
    with pytest.raises(errors.OutputExistsError, match="already exists; pass --overwrite"):
        files.check_output_file(str(output), "--output_file", False, inputs)
    files.check_output_file(str(output), "--output_file", True, inputs)
    for path, relation in ((data, "is"), (train_dir / "model_flags.json", "lies inside")):
        with pytest.raises(errors.InvalidInputError, match=f"^--output_file='.*' {relation} the "
                           "input"):
            files.check_output_file(str(path), "--output_file", True, inputs)
    with pytest.raises(errors.OutputExistsError, match="is a directory; give a file path"):
        files.check_output_file(str(tmp_path), "--output_file", True, [])
    with pytest.raises(errors.InvalidInputError, match="^--output_file is empty"):
        files.check_output_file("", "--output_file", True, [])


def test_a_refused_write_is_a_user_error_naming_the_path(tmp_path):
    blocker = tmp_path / "train_dir"
    blocker.write_text("a file where a directory should be")
    path = str(blocker / "model_flags.json")
    with pytest.raises(errors.OutputWriteError) as error:
        files.write_json_atomically(path, {"model": "x"})
    assert str(error.value) == f"cannot write {path!r}: {blocker} is not a directory"
    assert isinstance(error.value, OSError)
    with pytest.raises(errors.OutputWriteError, match="^cannot write "):
        with files.atomic_directory(str(blocker / "export")):
            pass
    # The body's own errors pass unchanged: only the file system's refusals are user errors.
    with pytest.raises(ZeroDivisionError):
        with files.atomic_output(str(tmp_path / "out.txt")) as handle:
            handle.write(str(1 / 0))
    assert _names(tmp_path) == ["train_dir"]
