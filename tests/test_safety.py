"""The programs under careless and hostile use (issue 17): bad input ends with exit code 1 and one
line naming the file, flag or video; a bug keeps its traceback; nothing is deleted outside the
output, no temporary file is left and an earlier result stays intact.

Every case runs the real command in a subprocess. They are all started by one fixture (a few at
a time: each loads TensorFlow), and the tests read their exit codes, outputs and the files left.
"""
import os
import re
import shutil
import sys
import time

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import evaluation
from yt8m.core import errors
from yt8m.core.config import EvalConfig
from yt8m.data import records
from yt8m.export import exporter
from yt8m.training import trainer

import training_helpers as helpers

PARALLEL_RUNS = 4
TRUNCATED_BYTES = 5000  # less than one frame-level record of the small data set
BEAM_RUNNER = ["--runner=DirectRunner", "--direct_num_workers=1"]
# A genuine bug: a library function raising what bad input also raises, then the real eval.py.
INJECTED_BUG = """
import runpy, sys
from yt8m import evaluation
def broken(*args, **kwargs):
    raise {error}
evaluation.evaluate_batches = broken
sys.argv = ["eval.py"] + sys.argv[1:]
runpy.run_path("eval.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return helpers.once_per_session(tmp_path_factory, "safety_runs", _run_cases)


# ----------------------------------------------------------------------------- the fixture


def _write_records(path, records_or_examples):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records_or_examples:
            writer.write(record if isinstance(record, bytes) else record.SerializeToString())
    return path


def _video(video_id, labels=(1,), rgb_frames=3, audio_frames=3, rgb_bytes=1024):
    rng = np.random.default_rng(0)
    return records.make_sequence_example(video_id, list(labels), {
        "rgb": rng.integers(0, 256, (rgb_frames, rgb_bytes), dtype=np.uint8),
        "audio": rng.integers(0, 256, (audio_frames, 128), dtype=np.uint8)})


def _bad_data(root, data_dir):
    """{case: (pattern, the bad file or directory)}: one frame-level problem each."""
    good = os.path.join(data_dir, "frame", "validate0000.tfrecord")
    with open(good, "rb") as handle:
        good_bytes = handle.read()
    bad = {}

    def path(case, name="shard.tfrecord"):
        os.makedirs(os.path.join(root, case), exist_ok=True)
        bad[case] = (os.path.join(root, case, "*"), os.path.join(root, case, name))
        return bad[case][1]

    with open(path("truncated"), "wb") as handle:
        handle.write(good_bytes[:TRUNCATED_BYTES])
    flipped = bytearray(good_bytes)
    flipped[100] ^= 0xFF  # a payload byte of the first record: its CRC fails
    with open(path("flipped_byte"), "wb") as handle:
        handle.write(bytes(flipped))
    with open(path("csv_matched", "labels.csv"), "w") as handle:
        handle.write("VideoId,Labels\n")
    _write_records(path("frame_size"), [_video("short", rgb_bytes=1000)])
    _write_records(path("label_range"), [_video("v9", labels=(9,))])  # a 10-class data set
    _write_records(path("unequal_frames"), [_video("uneq", audio_frames=2)])
    _write_records(path("missing_id"), [_video("")])
    _write_records(path("garbage"), [b"\x08\x96\x01garbage-not-a-proto" * 5])
    os.makedirs(path("directory"))
    return bad


def _copy(source, destination):
    shutil.copytree(source, destination, symlinks=True)
    return str(destination)


def _listing(directory):
    """{relative path: bytes} of every file under `directory` (links not followed)."""
    found = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            full = os.path.join(parent, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, directory)] = handle.read().hex()
    return found


def _run_all(commands, log_dir):
    """Runs {name: argv} PARALLEL_RUNS at a time; returns {name: (exit code, output)}."""
    pending, running, results = list(commands.items()), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL_RUNS:
            name, command = pending.pop(0)
            log = open(os.path.join(log_dir, f"{name}.log"), "w")
            running[name] = (helpers.start(command, stdout=log), log, time.time())
        for name, (process, log, started) in list(running.items()):
            if process.poll() is None and time.time() - started < 600:
                continue
            if process.poll() is None:
                process.kill()
            process.wait()
            log.close()
            with open(log.name) as handle:
                results[name] = (process.returncode, handle.read())
            del running[name]
        time.sleep(0.2)
    return results


def _run_cases(root):
    data_dir = helpers.make_small_dataset(root / "data")
    video_dir, frame_dir = str(root / "video_train"), str(root / "frame_train")
    trainer.train(helpers.train_config(video_dir, data_dir, max_steps=2))
    trainer.train(helpers.train_config(frame_dir, data_dir, frame_level=True, max_steps=2))
    validate = helpers.pattern(data_dir, "video", "validate")
    test_pattern = helpers.pattern(data_dir, "video", "test")
    evaluation.run_evaluation(EvalConfig(train_dir=video_dir, eval_data_pattern=validate,
                                         run_once=True, batch_size=16, num_readers=1))
    export_dir = str(root / "export")
    exporter.export_ensemble(exporter.ExportConfig(members=[video_dir], output_dir=export_dir))
    bad = _bad_data(str(root / "bad"), data_dir)

    # What each destructive case may destroy is a copy of its own.
    unrelated = root / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("not an export")
    (root / "link_to_unrelated").symlink_to(unrelated)
    earlier_export = _copy(export_dir, root / "earlier_export")
    (root / "link_to_export").symlink_to(earlier_export)
    member_is_output = _copy(video_dir, root / "member_is_output")
    holder = root / "holder"
    holder.mkdir()
    held_member = _copy(video_dir, holder / "member")
    teacher = _copy(video_dir, root / "teacher")
    (root / "a_file").write_text("not a directory")
    for name in ("existing.csv", "replaced.csv"):
        (root / name).write_text("previous\n")
    beam_inputs = root / "beam_in"
    beam_inputs.mkdir()
    shutil.copy(os.path.join(data_dir, "frame", "test0000.tfrecord"), beam_inputs)
    with open(os.path.join(data_dir, "frame", "test0001.tfrecord"), "rb") as handle:
        (beam_inputs / "test0001.tfrecord").write_bytes(handle.read()[:TRUNCATED_BYTES])
    beam_outputs = root / "beam_out"
    beam_outputs.mkdir()
    (beam_outputs / "videos.csv").write_text("previous\n")
    snapshots = {name: _listing(path) for name, path in (
        ("video_dir", video_dir), ("earlier_export", earlier_export),
        ("member_is_output", member_is_output), ("holder", str(holder)),
        ("teacher", teacher), ("unrelated", str(unrelated)))}

    frame_eval = ("eval.py", f"--train_dir={frame_dir}", "--run_once", "--batch_size=4")
    video = ["--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128",
             f"--num_classes={helpers.NUM_CLASSES}", "--batch_size=4", "--max_steps=1",
             f"--train_data_pattern={helpers.pattern(data_dir, 'video', 'train')}"]
    frames = ["--frame_features", "--model=FrameLevelLogisticModel", "--feature_names=rgb,audio",
              f"--num_classes={helpers.NUM_CLASSES}", f"--max_frames={helpers.MAX_FRAMES}",
              "--batch_size=4", "--max_steps=1",
              f"--train_data_pattern={helpers.pattern(data_dir, 'frame', 'train')}"]
    inference = ("inference.py", f"--train_dir={video_dir}",
                 f"--input_data_pattern={test_pattern}")
    test_file = os.path.join(data_dir, "video", "test0000.tfrecord")
    python = [sys.executable]
    cases = {
        "beam_truncated": python + [
            "-m", "yt8m.beam_inference", f"--input_data_pattern={beam_inputs}/*.tfrecord",
            f"--saved_model_dir={export_dir}", f"--output_file={beam_outputs}/videos.csv",
            "--overwrite", *BEAM_RUNNER],
        "export_link_to_export": helpers.python_command(
            "export_ensemble.py", f"--members={video_dir}",
            f"--output_dir={root / 'link_to_export'}", "--overwrite"),
        "export_link_to_unrelated": helpers.python_command(
            "export_ensemble.py", f"--members={video_dir}",
            f"--output_dir={root / 'link_to_unrelated'}", "--overwrite"),
        "export_member_is_output": helpers.python_command(
            "export_ensemble.py", f"--members={member_is_output}",
            f"--output_dir={member_is_output}", "--overwrite"),
        "export_output_holds_member": helpers.python_command(
            "export_ensemble.py", f"--members={held_member}", f"--output_dir={holder}",
            "--overwrite"),
        "teacher_cache_is_teacher": python + [
            "-m", "yt8m.distillation.teacher_cache", f"--teacher_dirs={teacher}",
            f"--data_pattern={validate}", f"--cache_dir={teacher}", "--overwrite"],
        "train_feature_sizes": helpers.python_command(
            "train.py", f"--train_dir={root / 'never_feature_sizes'}", *frames,
            "--feature_sizes=1024,64"),
        "train_dir_is_a_file": helpers.python_command(
            "train.py", f"--train_dir={root / 'a_file'}", *video),
        "train_unused_hparam": helpers.python_command(
            "train.py", f"--train_dir={root / 'unused_hparam'}", *video,
            "--model=LogisticModel", "--nextvlad_cluster_size=8"),
        "bug_value_error": python + ["-c", INJECTED_BUG.format(error='ValueError("boom")'),
                                     f"--train_dir={video_dir}", f"--eval_data_pattern={validate}",
                                     "--run_once"],
        "bug_key_error": python + ["-c", INJECTED_BUG.format(error='KeyError("max_frames")'),
                                   f"--train_dir={video_dir}", f"--eval_data_pattern={validate}",
                                   "--run_once"],
        "eval_unlabelled": helpers.python_command(
            "eval.py", f"--train_dir={video_dir}", f"--eval_data_pattern={test_pattern}",
            "--run_once"),
        "inference_output_is_input": helpers.python_command(
            *inference, f"--output_file={test_file}", "--overwrite"),
        "inference_output_is_model_flags": helpers.python_command(
            *inference, f"--output_file={video_dir}/model_flags.json", "--overwrite"),
        "inference_output_exists": helpers.python_command(
            *inference, f"--output_file={root / 'existing.csv'}"),
        "inference_overwrite": helpers.python_command(
            *inference, f"--output_file={root / 'replaced.csv'}", "--overwrite"),
        "synthetic_refusal": python + ["-m", "yt8m.synthetic", f"--output_dir={root / 'syn'}",
                                       "--num_videos=0"],
    }
    for case, (pattern, _) in bad.items():
        cases[f"data_{case}"] = helpers.python_command(*frame_eval,
                                                       f"--eval_data_pattern={pattern}")
    log_dir = root / "logs"
    log_dir.mkdir()
    results = _run_all(cases, str(log_dir))
    paths = {name: str(value) for name, value in dict(
        root=root, data_dir=data_dir, video_dir=video_dir, frame_dir=frame_dir,
        export_dir=export_dir, earlier_export=earlier_export, unrelated=unrelated,
        member_is_output=member_is_output, holder=holder, teacher=teacher, test_file=test_file,
        beam_inputs=beam_inputs, beam_outputs=beam_outputs).items()}
    with open(test_file, "rb") as handle:
        test_file_bytes = handle.read().hex()
    return {"results": results, "paths": paths, "bad": bad, "snapshots": snapshots,
            "test_file_bytes": test_file_bytes}


# ----------------------------------------------------------------------------- helpers


def _failure(runs, case, program):
    """The one error line of a failed run (exit code 1, no traceback)."""
    code, output = runs["results"][case]
    assert code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith(f"{program}: error: ")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


def _unchanged(runs, name, path=None):
    assert _listing(path or runs["paths"][name]) == runs["snapshots"][name]


def _temporaries(directory):
    return [name for name in os.listdir(directory) if ".tmp-" in name or "beam-temp" in name]


# ----------------------------------------------------------------------------- data errors


@pytest.mark.parametrize("case, problem", [
    ("truncated", "corrupted or truncated record at byte 0 of 5000 (TFRecord length/CRC check "
                  "failed; the rest of the file cannot be read)"),
    ("flipped_byte", "corrupted or truncated record at byte 0 of "),
    ("csv_matched", "corrupted or truncated record at byte 0 of 15 "),
    ("frame_size", "video short: feature rgb frame 0 has 1000 bytes, expected 1024"),
    ("label_range", "video v9: label 9 is outside [0, num_classes=6)"),
    ("unequal_frames", "video uneq: feature audio has 2 frames but rgb has 3"),
    ("missing_id", "record has no id (or video_id) value"),
    ("garbage", "a record is not a serialized tf.train.Example or SequenceExample (invalid "
                "protocol message)"),
    ("directory", "is a directory, not a TFRecord file: the data pattern matched it; give a "
                  "pattern of TFRecord files only"),
])
def test_a_bad_record_is_one_line_naming_the_file(runs, case, problem):
    _, bad_path = runs["bad"][case]
    line = _failure(runs, f"data_{case}", "eval.py")
    assert line.startswith(f"eval.py: error: {bad_path}"), line
    assert problem in line, line
    assert not os.path.exists(os.path.join(runs["paths"]["frame_dir"], "eval"))  # no result


def test_wrong_feature_sizes_name_the_file_and_video(runs):
    line = _failure(runs, "train_feature_sizes", "train.py")
    data_dir = runs["paths"]["data_dir"]
    assert re.fullmatch(rf"train\.py: error: {re.escape(data_dir)}/frame/train000[01]\.tfrecord: "
                        r"video \S+: feature audio frame 0 has 128 bytes, expected 64", line), line


# ----------------------------------------------------------------------------- bugs


@pytest.mark.parametrize("case, error", [("bug_value_error", "ValueError: boom"),
                                         ("bug_key_error", "KeyError: 'max_frames'")])
def test_a_bug_keeps_its_traceback(runs, case, error):
    code, output = runs["results"][case]
    assert code == 1, output[-3000:]
    assert "Traceback (most recent call last)" in output and error in output, output[-3000:]
    assert "in broken" in output  # the traceback reaches the failing library function
    assert "eval.py: error:" not in output


# ----------------------------------------------------------------------------- train dirs


def test_a_train_dir_that_is_a_file(runs):
    path = os.path.join(runs["paths"]["root"], "a_file")
    assert _failure(runs, "train_dir_is_a_file", "train.py") == (
        f"train.py: error: cannot write '{path}/model_flags.json': {path} is not a directory")
    with open(path) as handle:
        assert handle.read() == "not a directory"


def test_an_hparam_of_another_model_is_named_in_a_warning(runs):
    code, output = runs["results"]["train_unused_hparam"]
    assert code == 0, output[-3000:]
    assert ("train.py: warning: --model=LogisticModel does not use --nextvlad_cluster_size: "
            "ignored\n") in output
    assert "train.py: stopped at step 1 (max_steps)" in output


def test_synthetic_refusal_is_one_line(runs):
    assert _failure(runs, "synthetic_refusal", "yt8m.synthetic") == (
        "yt8m.synthetic: error: --num_videos=0: must be at least 1")


# ----------------------------------------------------------------------------- eval


def test_eval_refuses_unlabelled_records_and_keeps_the_labelled_result(runs):
    video_dir = runs["paths"]["video_dir"]
    line = _failure(runs, "eval_unlabelled", "eval.py")
    assert line == (
        f"eval.py: error: --eval_data_pattern='{runs['paths']['data_dir']}/video/test*.tfrecord' "
        "holds 9 examples but not one label (unlabelled test files?): its metrics would all be "
        "0; evaluate on labelled (train/validate) files")
    _unchanged(runs, "video_dir")  # metrics_step_2.json of the labelled data included
    metrics = os.path.join(video_dir, "eval", "metrics_step_2.json")
    with open(metrics) as handle:
        assert '"gap"' in handle.read()


# ----------------------------------------------------------------------------- inference


def test_inference_never_writes_over_an_input(runs):
    video_dir, test_file = runs["paths"]["video_dir"], runs["paths"]["test_file"]
    assert _failure(runs, "inference_output_is_input", "inference.py") == (
        f"inference.py: error: --output_file={test_file!r} is the input {test_file!r} "
        "(--input_data_pattern): writing it would destroy or change an input; choose an output "
        "outside the inputs")
    with open(test_file, "rb") as handle:
        assert handle.read().hex() == runs["test_file_bytes"]
    flags_file = os.path.join(video_dir, "model_flags.json")
    assert _failure(runs, "inference_output_is_model_flags", "inference.py") == (
        f"inference.py: error: --output_file={flags_file!r} lies inside the input "
        f"{video_dir!r} (--train_dir): writing it would destroy or change an input; choose an "
        "output outside the inputs")
    _unchanged(runs, "video_dir")


def test_inference_replaces_an_existing_file_only_with_overwrite(runs):
    root = runs["paths"]["root"]
    existing = os.path.join(root, "existing.csv")
    assert _failure(runs, "inference_output_exists", "inference.py") == (
        f"inference.py: error: --output_file={existing!r} already exists; pass --overwrite to "
        "replace it")
    with open(existing) as handle:
        assert handle.read() == "previous\n"
    code, output = runs["results"]["inference_overwrite"]
    assert code == 0, output[-3000:]
    with open(os.path.join(root, "replaced.csv")) as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs" and len(lines) == 10
    assert not _temporaries(root)


# ----------------------------------------------------------------------------- export


def test_overwrite_through_a_link_to_an_unrelated_directory_is_refused(runs):
    root = runs["paths"]["root"]
    link = os.path.join(root, "link_to_unrelated")
    assert _failure(runs, "export_link_to_unrelated", "export_ensemble.py") == (
        f"export_ensemble.py: error: --output_dir={link!r} is not a directory written by "
        "export_ensemble.py (it has no saved_model.pb, export_report.json); --overwrite replaces "
        "only such a directory: remove it yourself or choose another path")
    assert os.path.islink(link)
    _unchanged(runs, "unrelated")


def test_overwrite_of_a_link_replaces_the_link_not_its_target(runs):
    root = runs["paths"]["root"]
    code, output = runs["results"]["export_link_to_export"]
    assert code == 0, output[-3000:]
    link = os.path.join(root, "link_to_export")
    assert not os.path.islink(link)
    assert {"saved_model.pb", "export_report.json"} <= set(os.listdir(link))
    _unchanged(runs, "earlier_export")  # what the link pointed to: untouched
    assert not _temporaries(root)


def test_an_export_over_its_own_member_is_refused(runs):
    member = runs["paths"]["member_is_output"]
    assert _failure(runs, "export_member_is_output", "export_ensemble.py") == (
        f"export_ensemble.py: error: --output_dir={member!r} is the input {member!r} "
        "(--members): writing it would destroy or change an input; choose an output outside the "
        "inputs")
    _unchanged(runs, "member_is_output")


def test_an_export_over_a_directory_holding_a_member_is_refused(runs):
    holder = runs["paths"]["holder"]
    assert _failure(runs, "export_output_holds_member", "export_ensemble.py") == (
        f"export_ensemble.py: error: --output_dir={holder!r} contains the input "
        f"'{holder}/member' (--members): writing it would destroy or change an input; choose an "
        "output outside the inputs")
    _unchanged(runs, "holder")


def test_a_teacher_cache_over_its_teacher_is_refused(runs):
    teacher = runs["paths"]["teacher"]
    assert _failure(runs, "teacher_cache_is_teacher", "teacher_cache") == (
        f"teacher_cache: error: --cache_dir={teacher!r} is the input {teacher!r} "
        "(--teacher_dirs): writing it would destroy or change an input; choose an output "
        "outside the inputs")
    _unchanged(runs, "teacher")


# ----------------------------------------------------------------------------- Beam


def test_beam_names_a_truncated_file_and_leaves_no_temporary_directory(runs):
    inputs, outputs = runs["paths"]["beam_inputs"], runs["paths"]["beam_outputs"]
    code, output = runs["results"]["beam_truncated"]
    assert code == 1, output[-3000:]
    # (The DirectRunner logs the worker's traceback itself; the program ends with one line.)
    assert output.rstrip().splitlines()[-1].startswith("beam_inference: error: "), output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("beam_inference: error: ")]
    assert len(lines) == 1, output[-3000:]
    line = lines[0]
    assert line.startswith(
        f"beam_inference: error: {inputs}/test0001.tfrecord: corrupted or truncated record at "
        f"byte 0 of {TRUNCATED_BYTES} (TFRecord length/CRC check failed"), line
    assert max(len(text) for text in output.splitlines()) < 2000  # no hex dump of the bytes
    assert os.listdir(outputs) == ["videos.csv"]  # no beam-temp-* directory
    with open(os.path.join(outputs, "videos.csv")) as handle:
        assert handle.read() == "previous\n"


# ----------------------------------------------------------------------------- serving


def _serving_error(function, **inputs):
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        function(**inputs)
    return errors.input_error_message(raised.value)


def test_serving_signatures_check_their_inputs(runs):
    loaded = tf.saved_model.load(runs["paths"]["export_dir"])
    frames = loaded.signatures["serving_default"]

    def call(rgb_shape=(2, 5, 1024), audio_shape=(2, 5, 128), num_frames=(5, 3)):
        return dict(rgb=tf.zeros(rgb_shape), audio=tf.zeros(audio_shape),
                    num_frames=tf.constant(num_frames, tf.int32))

    assert frames(**call())["predictions"].shape == (2, helpers.NUM_CLASSES)
    assert _serving_error(frames, **call(num_frames=(5, -5))) == (
        "serving_default: num_frames[1] = -5 is outside [0, 5] (the frames sent per video)")
    assert _serving_error(frames, **call(num_frames=(6, 3))) == (
        "serving_default: num_frames[0] = 6 is outside [0, 5] (the frames sent per video)")
    assert _serving_error(frames, **call(audio_shape=(2, 4, 128), num_frames=(4, 3))) == (
        "serving_default: rgb has shape [2, 5, 1024] but audio [2, 4, 128]: both need the same "
        "videos and frames (pad them alike)")
    assert _serving_error(frames, **call(rgb_shape=(2, 5, 512))) == (
        "serving_default: rgb has shape [2, 5, 512]; expected [videos, frames, 1024]")
    assert _serving_error(frames, **call(num_frames=(5, 3, 1))) == (
        "serving_default: num_frames has shape [3]; expected one value per video [2]")

    examples = loaded.signatures["serve_examples"]

    def serialized(*videos):
        return {"example_bytes": tf.constant([video.SerializeToString() for video in videos])}

    outputs = examples(**serialized(_video("a"), _video("b", rgb_frames=2, audio_frames=2)))
    assert outputs["id"].numpy().tolist() == [b"a", b"b"]
    assert _serving_error(examples, **serialized(_video("a"), _video("b", rgb_bytes=1000))) == (
        "serve_examples: example_bytes[1]: video b: feature rgb frame 0 has 1000 bytes, "
        "expected 1024")
    assert _serving_error(examples, **serialized(_video("a", audio_frames=2))) == (
        "serve_examples: example_bytes[0]: video a: feature audio has 2 frames but rgb has 3")
    assert _serving_error(examples, **serialized(_video(""))) == (
        "serve_examples: example_bytes[0]: record has no id (or video_id) value")
