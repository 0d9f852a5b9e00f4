"""Train dirs and checkpoints under careless and hostile use (issue 17): one run per train dir,
checkpoints that can be trusted (a divergence guard, the last good checkpoint named and kept, the
newest intact checkpoint used when the newest cannot be read), nothing written by a run that
fails before its first step, no temporaries left by a killed run, corrupted records skipped one by
one with --skip_corrupted, a shard named twice read once, and kill -9 during checkpoint writes.

Every case runs the real command in a subprocess; the cases of the fixture run a few at a time.
"""
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.training import checkpoints
from yt8m.training import loss_guard
from yt8m.training import trainer

import training_helpers as helpers
from safety_helpers import failure, run_all

VIDEO = ["--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128",
         f"--num_classes={helpers.NUM_CLASSES}", "--batch_size=4"]
LOCK_FILE = ".train.lock"
# Root reads any file: the unreadable-file case drops that power (CAP_DAC_*) for its run.
AS_UNPRIVILEGED = (["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
                   if os.geteuid() == 0 and shutil.which("setpriv") else [])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_dataset):
    return helpers.once_per_session(tmp_path_factory, "safety_checkpoint_runs",
                                    lambda root: _run_cases(root, small_dataset))


# ----------------------------------------------------------------------------- the fixture


def _record_offsets(data):
    """Start of every TFRecord of `data` (each: 8-byte length, 4-byte length CRC, payload, 4-byte
    payload CRC)."""
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        offset += 16 + length
    return offsets


def _corrupt_payload(source, destination, record):
    """A copy of `source` with one payload byte of record number `record` flipped."""
    with open(source, "rb") as handle:
        data = bytearray(handle.read())
    data[_record_offsets(data)[record] + 12 + 20] ^= 0xFF
    with open(destination, "wb") as handle:
        handle.write(bytes(data))
    return destination


def _video_ids(path):
    return [tf.train.Example.FromString(record.numpy()).features.feature["id"].bytes_list.value[0]
            .decode() for record in tf.data.TFRecordDataset(path)]


def _dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _train(train_dir, data_dir, *args):
    return helpers.python_command(
        "train.py", f"--train_dir={train_dir}", *VIDEO,
        f"--train_data_pattern={helpers.pattern(data_dir, 'video', 'train')}", *args)


def _run_cases(root, data_dir):
    trained = str(root / "trained")  # ckpt-2 and ckpt-4
    trainer.train(helpers.train_config(trained, data_dir, max_steps=4, export_model_steps=2))
    video = os.path.join(data_dir, "video")
    copies = {name: shutil.copytree(trained, root / name, symlinks=True) for name in (
        "held", "stale", "temporaries", "eval_fallback", "eval_corrupt", "train_fallback",
        "eval_skip", "eval_unreadable")}
    copies = {name: str(path) for name, path in copies.items()}

    # A live train.py (this process) holds one lock; a killed one left the other.
    held = open(os.path.join(copies["held"], LOCK_FILE), "w")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": "2026-01-01T00:00:00"}))
    held.flush()
    stale_pid = _dead_pid()
    with open(os.path.join(copies["stale"], LOCK_FILE), "w") as handle:
        handle.write(json.dumps({"pid": stale_pid, "host": socket.gethostname(),
                                 "started": "2026-01-01T00:00:00"}))

    # What writers killed mid-write leave (TensorFlow's, and yt8m.core.files' of a dead pid);
    # eval.py writing now (this pid) keeps its temporary.
    temporaries = copies["temporaries"]
    os.makedirs(os.path.join(temporaries, "ckpt-6_temp"))
    for name in ("ckpt-6_temp/part-00000-of-00001.data-00000-of-00001",
                 "ckpt-6.index.tempstate1234567", "checkpoint.tmp0123456789abcdef",
                 f".model_flags.json.tmp-{stale_pid}-0123abcd"):
        with open(os.path.join(temporaries, name), "w") as handle:
            handle.write("partial")
    os.makedirs(os.path.join(temporaries, "eval"), exist_ok=True)
    live_temporary = os.path.join(temporaries, "eval",
                                  f".metrics_step_4.json.tmp-{os.getpid()}-0123abcd")
    with open(live_temporary, "w") as handle:
        handle.write("being written")

    # The newest checkpoint unreadable: a flipped byte (eval), a missing .data file (train).
    for name in ("eval_fallback", "eval_corrupt"):
        (data_file,) = [path for path in os.listdir(copies[name])
                        if path.startswith("ckpt-4.data")]
        with open(os.path.join(copies[name], data_file), "r+b") as handle:
            data = bytearray(handle.read())
            for offset in range(0, len(data), 1000):  # every tensor: eval reads only the model
                data[offset] ^= 0xFF
            handle.seek(0)
            handle.write(bytes(data))
    for path in os.listdir(copies["train_fallback"]):
        if path.startswith("ckpt-4.data"):
            os.remove(os.path.join(copies["train_fallback"], path))

    # Data: a payload byte flipped in the second record of a shard; a shard nobody may read.
    corrupt_dir = root / "corrupt"
    corrupt_dir.mkdir()
    for split in ("train", "validate", "test"):
        _corrupt_payload(os.path.join(video, f"{split}0000.tfrecord"),
                         str(corrupt_dir / f"{split}0000.tfrecord"), record=1)
        shutil.copy(os.path.join(video, f"{split}0001.tfrecord"), corrupt_dir)
    (root / "corrupt_link").symlink_to(corrupt_dir)
    unreadable_dir = root / "unreadable"
    unreadable_dir.mkdir()
    unreadable = str(unreadable_dir / "validate0000.tfrecord")
    shutil.copy(os.path.join(video, "validate0000.tfrecord"), unreadable)
    os.chmod(unreadable, 0)

    # What an inference.py killed while writing its CSV left.
    stale_csv = root / f".predictions.csv.tmp-{stale_pid}-0123abcd"
    stale_csv.write_text("VideoId,LabelConfidencePairs\npartial")

    never = str(root / "never")
    first_fails = str(root / "first_fails")
    cases = {
        "lock_held": _train(copies["held"], data_dir, "--max_steps=6"),
        "lock_stale": _train(copies["stale"], data_dir, "--max_steps=5"),
        "temporaries": _train(temporaries, data_dir, "--max_steps=5"),
        "train_fallback": _train(copies["train_fallback"], data_dir, "--max_steps=5"),
        "bad_flag": _train(never, data_dir, "--max_steps=2", "--optimizer=Bogus"),
        "unlabelled": helpers.python_command(
            "train.py", f"--train_dir={first_fails}", *VIDEO, "--model=MoeModel",
            f"--train_data_pattern={helpers.pattern(data_dir, 'video', 'test')}"),
        "diverges": _train(
            root / "diverges", data_dir, "--max_steps=40", "--export_model_steps=10",
            "--keep_checkpoint_max=1", "--optimizer=GradientDescentOptimizer",
            "--base_learning_rate=0.02", "--learning_rate_decay=1", "--clip_gradient_norm=0",
            "--l2_penalty=200", "--divergence_factor=100"),
        "train_skip": _train(
            root / "train_skip", data_dir, "--max_steps=12", "--skip_corrupted",
            f"--train_data_pattern={corrupt_dir}/train*.tfrecord"),
        "eval_fallback": helpers.python_command(
            "eval.py", f"--train_dir={copies['eval_fallback']}", "--run_once",
            f"--eval_data_pattern={helpers.pattern(data_dir, 'video', 'validate')}"),
        "eval_corrupt": helpers.python_command(
            "eval.py", f"--train_dir={copies['eval_corrupt']}",
            f"--checkpoint={copies['eval_corrupt']}/ckpt-4",
            f"--eval_data_pattern={helpers.pattern(data_dir, 'video', 'validate')}"),
        "eval_skip": helpers.python_command(
            "eval.py", f"--train_dir={copies['eval_skip']}", "--run_once", "--skip_corrupted",
            f"--eval_data_pattern={corrupt_dir}/validate*.tfrecord"),
        "eval_unreadable": AS_UNPRIVILEGED + helpers.python_command(
            "eval.py", f"--train_dir={copies['eval_unreadable']}", "--run_once",
            "--skip_corrupted", f"--eval_data_pattern={unreadable}"),
        "inference_skip_twice_named": helpers.python_command(
            "inference.py", f"--train_dir={trained}", "--skip_corrupted",
            f"--input_data_pattern={corrupt_dir}/test*.tfrecord,"
            f"{root / 'corrupt_link'}/test*.tfrecord",
            f"--output_file={root / 'predictions.csv'}"),
    }
    log_dir = root / "logs"
    log_dir.mkdir()
    results = run_all(cases, str(log_dir))
    held.close()
    # The corrected command after a first run that failed at its first step.
    results.update(run_all({"corrected": _train(first_fails, data_dir, "--max_steps=2")},
                           str(log_dir)))
    paths = {name: str(value) for name, value in dict(
        root=root, data_dir=data_dir, trained=trained, never=never, first_fails=first_fails,
        corrupt_dir=corrupt_dir, unreadable=unreadable, live_temporary=live_temporary,
        **copies).items()}
    test_ids = {name: _video_ids(os.path.join(video, name))
                for name in ("test0000.tfrecord", "test0001.tfrecord")}
    return {"results": results, "paths": paths, "stale_pid": stale_pid, "holder_pid": os.getpid(),
            "test_ids": test_ids}


def _output(runs, case, code=0):
    returned, output = runs["results"][case]
    assert returned == code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    return output


def _leftovers(train_dir):
    return sorted(name for name in os.listdir(train_dir)
                  if "_temp" in name or ".tmp" in name or "tempstate" in name
                  or name == LOCK_FILE)


# ----------------------------------------------------------------------------- the lock


def test_a_second_run_on_a_locked_train_dir_is_refused(runs):
    train_dir = runs["paths"]["held"]
    assert failure(runs, "lock_held", "train.py") == (
        f"train.py: error: --train_dir={train_dir!r} is in use by process {runs['holder_pid']} "
        f"on host {socket.gethostname()} (started 2026-01-01T00:00:00), which holds "
        f"{train_dir}/{LOCK_FILE}: two runs would overwrite each other's checkpoints; wait for "
        "it to end or choose another --train_dir")
    assert not os.path.exists(os.path.join(train_dir, "ckpt-6.index"))


def test_a_stale_lock_is_taken_over_with_a_warning_and_released(runs):
    train_dir = runs["paths"]["stale"]
    output = _output(runs, "lock_stale")
    assert (f"{train_dir}/{LOCK_FILE}: took over the stale lock of process {runs['stale_pid']} "
            f"on host {socket.gethostname()} (started 2026-01-01T00:00:00), which no longer runs "
            "(killed?)") in output
    assert "train.py: stopped at step 5 (max_steps)" in output
    assert _leftovers(train_dir) == []  # the lock file is gone with its run


# ----------------------------------------------------------------------------- temporaries


def test_temporaries_of_killed_writers_are_removed_at_start(runs):
    train_dir = runs["paths"]["temporaries"]
    output = _output(runs, "temporaries")
    assert re.search(r"Removed 4 temporary file\(s\) an interrupted run left in "
                     rf"{re.escape(train_dir)}: \.model_flags\.json\.tmp-\d+-0123abcd, "
                     r"checkpoint\.tmp0123456789abcdef, ckpt-6\.index\.tempstate1234567, "
                     r"ckpt-6_temp", output), output[-3000:]
    assert "train.py: stopped at step 5 (max_steps)" in output
    assert _leftovers(train_dir) == []
    assert os.path.exists(runs["paths"]["live_temporary"])  # its writer (this pid) still runs


# ----------------------------------------------------------------------------- nothing written


def test_a_flag_error_creates_nothing(runs):
    line = failure(runs, "bad_flag", "train.py")
    assert line.startswith("train.py: error: --optimizer='Bogus' is not one of: "), line
    assert not os.path.exists(runs["paths"]["never"])


def test_unlabelled_training_data_is_refused_and_the_corrected_command_works(runs):
    first_fails = runs["paths"]["first_fails"]
    assert failure(runs, "unlabelled", "train.py") == (
        f"train.py: error: --train_data_pattern="
        f"'{runs['paths']['data_dir']}/video/test*.tfrecord': the first batch of 4 examples "
        "holds not one label (unlabelled test files?); training would fit all-zero targets. Give "
        "labelled files, or pass --allow_unlabelled to train on them anyway (e.g. distillation).")
    # The failed first run (another --model) left no model_flags.json to refuse the corrected
    # command with.
    output = _output(runs, "corrected")
    assert "train.py: stopped at step 2 (max_steps)" in output
    with open(os.path.join(first_fails, "model_flags.json")) as handle:
        assert json.load(handle)["model"] == "LogisticModel"


# ----------------------------------------------------------------------------- bad losses


def test_a_diverging_run_stops_naming_the_last_good_checkpoint_and_keeps_it(runs):
    train_dir = os.path.join(runs["paths"]["root"], "diverges")
    line = failure(runs, "diverges", "train.py")
    assert re.fullmatch(
        r"train\.py: error: Loss is \S+ at step 21, more than --divergence_factor=100 times the "
        r"median \S+ of the last 20 steps \(diverged\); stopped without saving\. The last good "
        rf"checkpoint is {re.escape(train_dir)}/ckpt-10; the newest, {re.escape(train_dir)}/"
        r"ckpt-20, holds the weights this loss measured: train\.py resumes from the newest "
        r"checkpoint, so remove it \(its \.index and \.data files\) to resume from an earlier "
        r"one\.", line), line
    loss = float(line.split("Loss is ")[1].split()[0])
    assert 1e15 < loss < 1e30  # finite: the guard, not the NaN check
    # --keep_checkpoint_max=1 still keeps the last good checkpoint beside the newest.
    assert checkpoints.checkpoint_paths(train_dir) == [f"{train_dir}/ckpt-10",
                                                       f"{train_dir}/ckpt-20"]
    assert os.path.exists(f"{train_dir}/ckpt-10.index")


def test_loss_guard_proves_a_checkpoint_by_the_step_after_it():
    guard = loss_guard.LossGuard(divergence_factor=10)
    for step in range(1, 25):
        guard.check(1.0 + (step % 3), step)  # median 2
    guard.saved("ckpt-24")
    guard.check(19.9, 25)  # below 10 x 2: proves ckpt-24
    assert guard.last_good == "ckpt-24"
    guard.saved("ckpt-25")
    with pytest.raises(loss_guard.DivergedLossError) as raised:
        guard.check(20.1, 26)
    assert "The last good checkpoint is ckpt-24; the newest, ckpt-25, holds" in str(raised.value)
    restarted = loss_guard.LossGuard(divergence_factor=0)  # off: only non-finite losses stop
    restarted.restored("ckpt-25", proven=False, older="ckpt-24")
    restarted.check(1e30, 26)
    assert restarted.last_good == "ckpt-25"
    with pytest.raises(loss_guard.NonFiniteLossError) as raised:
        restarted.check(float("nan"), 27)
    assert str(raised.value) == ("Loss is nan at step 27; stopped without saving. The last good "
                                 "checkpoint is ckpt-25.")


# ----------------------------------------------------------------------------- unreadable ckpts


def test_eval_falls_back_to_the_newest_intact_checkpoint(runs):
    train_dir = runs["paths"]["eval_fallback"]
    output = _output(runs, "eval_fallback")
    assert (f"Checkpoint {train_dir}/ckpt-4 cannot be read: using the newest intact one, "
            f"{train_dir}/ckpt-2, instead.") in output
    assert "eval.py: step 2: GAP " in output
    assert [name for name in os.listdir(os.path.join(train_dir, "eval"))
            if name.startswith("metrics")] == ["metrics_step_2.json"]


def test_eval_of_a_named_corrupted_checkpoint_is_one_line(runs):
    train_dir = runs["paths"]["eval_corrupt"]
    line = failure(runs, "eval_corrupt", "eval.py")
    assert line.startswith(f"eval.py: error: checkpoint {train_dir}/ckpt-4 cannot be read (a "
                           "file is missing or corrupted): "), line
    assert "Checksum does not match" in line


def test_training_resumes_from_the_newest_intact_checkpoint(runs):
    train_dir = runs["paths"]["train_fallback"]
    output = _output(runs, "train_fallback")
    assert (f"Checkpoint {train_dir}/ckpt-4 cannot be read: using the newest intact one, "
            f"{train_dir}/ckpt-2, instead.") in output
    assert f"Resumed from {train_dir}/ckpt-2 at step 2" in output
    assert "train.py: stopped at step 5 (max_steps)" in output


# ----------------------------------------------------------------------------- corrupted data


def _skip_lines(output):
    return [line for line in output.splitlines() if line.startswith("yt8m.data: skipped")]


def test_skip_corrupted_drops_only_the_corrupted_record(runs):
    corrupt_dir = runs["paths"]["corrupt_dir"]
    output = _output(runs, "eval_skip")
    assert _skip_lines(output) == [f"yt8m.data: skipped 1 corrupted record(s) in {corrupt_dir}/"
                                   "validate0000.tfrecord; 1 skipped so far"]
    with open(os.path.join(runs["paths"]["eval_skip"], "eval", "metrics_step_4.json")) as handle:
        assert json.load(handle)["num_examples"] == 8  # 9 validation videos, 1 corrupted

    output = _output(runs, "train_skip")
    assert f"skipped 1 corrupted record(s) in {corrupt_dir}/train0000.tfrecord" in output
    assert "train.py: stopped at step 12 (max_steps)" in output  # the input position is saved


def test_inference_skips_the_corrupted_record_and_reads_a_shard_named_twice_once(runs):
    _output(runs, "inference_skip_twice_named")
    with open(os.path.join(runs["paths"]["root"], "predictions.csv")) as handle:
        rows = handle.read().splitlines()[1:]
    first, second = runs["test_ids"]["test0000.tfrecord"], runs["test_ids"]["test0001.tfrecord"]
    expected = first[:1] + first[2:] + second  # the second record of test0000 is corrupted
    assert sorted(row.split(",")[0] for row in rows) == sorted(expected)
    # The temporary of a killed earlier write of the same CSV is gone.
    assert [name for name in os.listdir(runs["paths"]["root"]) if ".tmp-" in name] == []


@pytest.mark.skipif(os.geteuid() == 0 and not AS_UNPRIVILEGED, reason="root reads every file")
def test_an_unreadable_file_is_a_read_error_not_corruption(runs):
    assert failure(runs, "eval_unreadable", "eval.py") == (
        f"eval.py: error: {runs['paths']['unreadable']}: cannot be read (Permission denied): a "
        "read error, not a corrupted record")


# ----------------------------------------------------------------------------- kill -9


def test_kill_9_during_checkpoint_writes_always_resumes(tmp_path, small_dataset):
    """12 SIGKILLs at random moments of a run that writes a checkpoint every step; each run
    resumes from the newest finished checkpoint, and a last run finishes."""
    data_dir, train_dir = small_dataset, tmp_path / "run"

    def command(max_steps):
        return _train(train_dir, data_dir, f"--max_steps={max_steps}", "--export_model_steps=1",
                      "--keep_checkpoint_max=2", "--num_epochs=1000")

    draw = random.Random(17)
    resumed_steps = []
    for _ in range(12):
        process = helpers.start(command(100000))
        lines = []
        for line in process.stdout:
            lines.append(line)
            resumed = re.search(r"Resumed from \S+ at step (\d+)", line)
            if resumed:
                resumed_steps.append(int(resumed.group(1)))
            if "Saved checkpoint" in line:
                break
        else:
            raise AssertionError("train.py ended before saving:\n" + "".join(lines[-30:]))
        time.sleep(draw.uniform(0.0, 0.4))  # (it saves every step: most of its time)
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        assert process.returncode == -signal.SIGKILL, "".join(lines[-30:])
    assert len(resumed_steps) == 11 and resumed_steps == sorted(resumed_steps)  # never back
    newest = checkpoints.checkpoint_step(tf.train.latest_checkpoint(str(train_dir)))
    final = helpers.start(command(newest + 2))
    output, _ = final.communicate(timeout=600)
    assert final.returncode == 0, output[-3000:]
    assert re.search(rf"Resumed from \S+/ckpt-{newest} at step {newest}\b", output), output
    assert f"train.py: stopped at step {newest + 2} (max_steps)" in output
    assert _leftovers(str(train_dir)) == []
    checkpoints.load_model(str(train_dir))
