"""train.py / eval.py / inference.py as programs: bad input fails with exit code 1 and one clear
message naming the flag or path, writing nothing; good input works end to end.

Every program run is a subprocess (about 5 s of TensorFlow start-up each), so all of them are
started together by one fixture (once per session, also under xdist) and the tests only read
their results.
"""
import os

import pytest

import yt8m  # noqa: F401
import frame_level_models
from yt8m import evaluation
from yt8m.inference import video_inference
from yt8m.core.config import EvalConfig, InferenceConfig

import training_helpers as helpers

NO_FILES = "/nonexistent/train*.tfrecord"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_dataset, video_logistic_run, video_moe_run):
    return helpers.once_per_session(tmp_path_factory, "cli_runs", lambda root: _run_programs(
        root, small_dataset, video_logistic_run, video_moe_run))


def _run_programs(root, data_dir, logistic_run, moe_dir):
    """Runs every program case in parallel on the shared data and tiny train dirs (copied where
    eval.py writes into them)."""
    logistic_dir = helpers.copy_tree(logistic_run, root / "logistic")
    moe_copy = helpers.copy_tree(moe_dir, root / "moe")
    no_checkpoint_dir = root / "no_checkpoint"
    no_checkpoint_dir.mkdir()
    with open(os.path.join(logistic_dir, "model_flags.json")) as handle:
        model_flags = handle.read()
    (no_checkpoint_dir / "model_flags.json").write_text(model_flags)

    video = ["--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128",
             f"--num_classes={helpers.NUM_CLASSES}"]
    train_args = [f"--train_data_pattern={helpers.pattern(data_dir, 'video', 'train')}",
                  "--max_steps=1", "--batch_size=4", *video]
    validate = f"--eval_data_pattern={helpers.pattern(data_dir, 'video', 'validate')}"
    test_files = f"--input_data_pattern={helpers.pattern(data_dir, 'video', 'test')}"
    outputs = {name: str(root / f"{name}.csv") for name in ("good", "no_ckpt", "model_flags")}
    cases = {
        "unknown_model": ("train.py", f"--train_dir={root / 'a'}", "--model=NoSuchModel",
                          *train_args),
        "feature_mismatch": ("train.py", f"--train_dir={root / 'b'}", *train_args,
                             "--feature_sizes=1024"),
        "no_train_files": ("train.py", f"--train_dir={root / 'c'}", *train_args,
                           f"--train_data_pattern={NO_FILES}"),
        "other_model": ("train.py", f"--train_dir={logistic_dir}", "--model=MoeModel",
                        *train_args),
        "eval_no_checkpoint": ("eval.py", f"--train_dir={no_checkpoint_dir}", validate,
                               "--run_once"),
        "eval_foreign_checkpoint": ("eval.py", f"--train_dir={no_checkpoint_dir}", validate,
                                    f"--checkpoint={moe_dir}/ckpt-2"),
        "inference_no_checkpoint": ("inference.py", f"--train_dir={no_checkpoint_dir}",
                                    test_files, f"--output_file={outputs['no_ckpt']}"),
        "eval_good": ("eval.py", f"--train_dir={logistic_dir}", validate, "--run_once"),
        "inference_good": ("inference.py", f"--train_dir={logistic_dir}", test_files,
                           f"--output_file={outputs['good']}"),
        # The starter's flags: accepted (on a machine without GPUs --num_gpu=2 means the CPU).
        "train_starter_flags": ("train.py", f"--train_dir={root / 'starter'}", *train_args,
                                "--num_gpu=2", "--log_device_placement",
                                "--learning_rate_decay_examples=2.5e6"),
        "eval_model_flags": ("eval.py", f"--train_dir={moe_copy}", validate, "--run_once",
                             "--moe_num_mixtures=2", "--l2_penalty=0.5",
                             "--dbof_cluster_size=4096"),
        # Willow's inference lines repeat the training command's model flags.
        "inference_model_flags": ("inference.py", f"--train_dir={moe_dir}", test_files,
                                  f"--output_file={outputs['model_flags']}", "--model=MoeModel",
                                  "--frame_features=True", *video, "--moe_l2=0.5",
                                  "--label_loss=CrossEntropyLoss", "--iterations=300"),
    }
    processes = {name: helpers.start(helpers.python_command(*args))
                 for name, args in cases.items()}
    results = {}
    for name, process in processes.items():
        output = process.communicate(timeout=300)[0]
        results[name] = (process.returncode, output)
    return {"results": results, "root": str(root), "logistic_dir": logistic_dir, "moe_dir": moe_dir,
            "no_checkpoint_dir": str(no_checkpoint_dir), "outputs": outputs,
            "model_flags": model_flags}


def _failure(runs, name):
    code, output = runs["results"][name]
    assert code == 1, output
    assert "Traceback" not in output, output
    return helpers.last_error_line(output)


def test_unknown_model_lists_the_choices(runs):
    assert _failure(runs, "unknown_model") == (
        "train.py: error: --model='NoSuchModel' is not a known model; choose one of: "
        + ", ".join(frame_level_models.MODEL_NAMES))
    assert frame_level_models.MODEL_NAMES[:3] == (
        "LogisticModel", "MoeModel", "FrameLevelLogisticModel")
    assert not os.path.exists(os.path.join(runs["root"], "a", "model_flags.json"))


def test_feature_names_and_sizes_of_different_lengths(runs):
    assert _failure(runs, "feature_mismatch") == (
        "train.py: error: --feature_names has 2 names ('mean_rgb,mean_audio') but "
        "--feature_sizes has 1 sizes ('1024'); give one size per feature")


def test_a_data_pattern_matching_no_file(runs):
    assert _failure(runs, "no_train_files").startswith(
        f"train.py: error: --train_data_pattern='{NO_FILES}' matches no file")
    assert not os.path.exists(os.path.join(runs["root"], "c"))


def test_continuing_a_train_dir_with_another_model_is_refused(runs):
    code, output = runs["results"]["other_model"]
    assert code == 1, output
    path = os.path.join(runs["logistic_dir"], "model_flags.json")
    assert f"train.py: error: Model flags do not match the existing {path}:\n" in output
    assert "  model: 'LogisticModel' in the file, 'MoeModel' now\n" in output
    assert "Delete the file, change --train_dir, or pass --start_new_model." in output
    with open(path) as handle:
        assert handle.read() == runs["model_flags"]  # untouched


def test_eval_and_inference_need_a_checkpoint(runs):
    message = (f"--train_dir={runs['no_checkpoint_dir']!r} holds no checkpoint (train.py writes "
               "ckpt-<step>.index files there)")
    assert _failure(runs, "eval_no_checkpoint") == f"eval.py: error: {message}"
    assert _failure(runs, "inference_no_checkpoint") == f"inference.py: error: {message}"
    assert not os.path.exists(runs["outputs"]["no_ckpt"])
    assert not os.path.exists(os.path.join(runs["no_checkpoint_dir"], "eval"))


def test_a_checkpoint_of_another_model_is_refused(runs):
    line = _failure(runs, "eval_foreign_checkpoint")
    path = os.path.join(runs["no_checkpoint_dir"], "model_flags.json")
    assert line.startswith(
        f"eval.py: error: checkpoint {runs['moe_dir']}/ckpt-2 does not hold the weights of model "
        f"'LogisticModel' described by {path}: ")
    assert not os.path.exists(os.path.join(runs["no_checkpoint_dir"], "eval"))


def test_eval_and_inference_programs_work(runs):
    code, output = runs["results"]["eval_good"]
    assert code == 0, output
    metrics_file = os.path.join(runs["logistic_dir"], "eval", "metrics_step_2.json")
    assert "eval.py: step 2: GAP " in output and f"({metrics_file})" in output
    assert os.path.exists(metrics_file)
    code, output = runs["results"]["inference_good"]
    assert code == 0, output
    assert f"inference.py: wrote 9 videos to {runs['outputs']['good']}" in output
    with open(runs["outputs"]["good"]) as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs" and len(lines) == 10


# The same checks in-process (the library raises what the programs print).

def test_eval_needs_a_directory_written_by_train_py(runs):
    missing = os.path.join(runs["root"], "nothing")
    with pytest.raises(FileNotFoundError) as error:
        evaluation.run_evaluation(EvalConfig(train_dir=missing, eval_data_pattern=NO_FILES))
    assert str(error.value) == (f"--train_dir={missing!r} has no model_flags.json: it is not a "
                                "directory written by train.py")


def test_inference_input_pattern_matching_no_file(runs):
    output_file = os.path.join(runs["root"], "never.csv")
    with pytest.raises(FileNotFoundError) as error:
        video_inference.run_inference(InferenceConfig(
            train_dir=runs["logistic_dir"], input_data_pattern=NO_FILES, output_file=output_file))
    assert str(error.value).startswith(f"--input_data_pattern='{NO_FILES}' matches no file")
    assert not os.path.exists(output_file)


def test_train_accepts_the_starters_device_flags(runs):
    code, output = runs["results"]["train_starter_flags"]
    assert code == 0, output
    assert f"train.py: stopped at step 1 (max_steps); checkpoint {runs['root']}/starter/ckpt-1" \
        in output
    # --log_device_placement: TensorFlow prints where each operation runs.
    assert "/job:localhost/replica:0/task:0/device:CPU:0" in output


def test_inference_accepts_the_model_flags_and_names_those_that_differ(runs):
    code, output = runs["results"]["inference_model_flags"]
    assert code == 0, output
    assert os.path.exists(runs["outputs"]["model_flags"])
    warnings = [line for line in output.splitlines()
                if line.startswith("inference.py: warning:")]
    # --model, --feature_names, --feature_sizes, --num_classes and --label_loss agree with
    # model_flags.json: no warning; --moe_l2 is Willow's name of --l2_penalty.
    assert warnings == [
        "inference.py: warning: --frame_features=True is ignored: the model is rebuilt as "
        "trained, with frame_features=False (model_flags.json)",
        "inference.py: warning: --iterations is ignored: model 'MoeModel' has no such "
        "hyper-parameter",
        "inference.py: warning: --l2_penalty=0.5 is ignored: the model is rebuilt as trained, "
        "with l2_penalty=1e-08 (model_flags.json)"]


def test_eval_accepts_the_model_flags_and_names_those_it_does_not_use(runs):
    code, output = runs["results"]["eval_model_flags"]
    assert code == 0, output
    assert "eval.py: step 2: GAP " in output
    warnings = [line for line in output.splitlines() if line.startswith("eval.py: warning:")]
    assert warnings == [
        "eval.py: warning: --dbof_cluster_size is ignored: model 'MoeModel' has no such "
        "hyper-parameter",
        "eval.py: warning: --l2_penalty=0.5 is ignored: the model is rebuilt as trained, with "
        "l2_penalty=1e-08 (model_flags.json)"]
