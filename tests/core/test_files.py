"""yt8m.core.files: a result file or directory appears whole or not at all."""
import json
import os

import pytest

import yt8m  # noqa: F401
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
