"""Gradual pruning from train.py (--pruning_*, issue 19) end to end: the schedule reaches its
target, a SIGKILLed run resumes bit-identically, eval / inference / export read a pruned train dir
without extra flags, checkpoint averaging keeps the zeros, mixtures prune every branch, bad
values are clear errors.

References: the Zhu & Gupta schedule computed by hand, the weight and mask pairs tfmot keeps in
its wrappers restored with a plain tf.train.Checkpoint and multiplied with numpy, and the Keras
model of the stripped checkpoint.
"""
import dataclasses
import json
import os
import random
import re
import signal

import numpy as np
import pytest
from absl import flags

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

import frame_level_models
from frame_level_models import hparams, pruning
from yt8m import evaluation
from yt8m import metrics
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import options
from yt8m.core.config import PruningConfig, TrainConfig
from yt8m.data import readers
from yt8m.export import members as members_lib
from yt8m.training import checkpoints
from yt8m.training import inputs
from yt8m.training import trainer
from yt8m.training.model_builder import build_model

import training_helpers as helpers

TARGET, BEGIN, END, FREQUENCY = 0.75, 0, 6, 2
MAX_STEPS, SAVE_EVERY = 10, 2
NEXTVLAD_FLAGS = ("--nextvlad_cluster_size=4", "--nextvlad_hidden_size=16", "--groups=2",
                  "--gating_reduction=4", "--drop_rate=0")  # no dropout: resumable bit for bit
PRUNING_FLAGS = (f"--pruning_target_sparsity={TARGET}", f"--pruning_begin_step={BEGIN}",
                 f"--pruning_end_step={END}", f"--pruning_frequency={FREQUENCY}")


def scheduled_sparsity(step):
    """Zhu & Gupta's s_t = s_f (1 - (1 - (t - t0) / (n dt))^3) at the last mask update <= step
    (initial sparsity 0)."""
    if step < BEGIN:
        return 0.0
    last_update = BEGIN + min((step - BEGIN) // FREQUENCY * FREQUENCY, END - BEGIN)
    return TARGET * (1.0 - (1.0 - (last_update - BEGIN) / (END - BEGIN)) ** 3)


@pytest.fixture(scope="module")
def data_dir(small_dataset):
    return small_dataset  # the session's shared data set (read only)


NEXTVLAD_RUN = ("--frame_features", "--feature_names=rgb,audio", "--feature_sizes=1024,128",
                f"--max_frames={helpers.MAX_FRAMES}", "--model=NeXtVLADModel", *NEXTVLAD_FLAGS)
# Video-level MoE (gates and experts pruned): cheap, and without batch norm, whose moving
# statistics are per replica under MirroredStrategy (see test_killed_...).
MOE_RUN = ("--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128", "--model=MoeModel",
           "--moe_num_mixtures=3")


def train_command(train_dir, data_dir, model_args):
    """train.py of a tiny pruned model (schedule above), mirrored over two CPU devices."""
    level = "frame" if "--frame_features" in model_args else "video"
    return helpers.python_command(
        "train.py", f"--train_dir={train_dir}",
        f"--train_data_pattern={helpers.pattern(data_dir, level, 'train')}", *model_args,
        f"--num_classes={helpers.NUM_CLASSES}", "--num_cpu_devices=2", "--batch_size=2",
        "--num_epochs=1000", f"--max_steps={MAX_STEPS}", f"--export_model_steps={SAVE_EVERY}",
        "--keep_checkpoint_max=10", "--log_every_steps=1", "--num_readers=2",
        "--shuffle_seed=5", *PRUNING_FLAGS)


def run_to_end(command):
    process = helpers.start(command)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def pruned_dir(data_dir, tmp_path_factory):
    """The uninterrupted pruned run: checkpoints at steps 2, 4, ..., 10."""
    train_dir = tmp_path_factory.mktemp("pruned") / "run"
    output = run_to_end(train_command(train_dir, data_dir, NEXTVLAD_RUN))
    assert "global batch 4 on 2 replica(s)" in output  # MirroredStrategy
    return str(train_dir)


def checkpoint_pairs(train_dir, checkpoint):
    """[(raw weight, mask)] of every pruned weight, as numpy: a freshly built pruned model restored
    with a plain tf.train.Checkpoint (no mask applied), pairs from tfmot's wrappers."""
    model = build_model(model_flags_lib.read_model_flags(train_dir))
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
    return [(weight.numpy(), mask.numpy()) for layer in pruning.pruning_layers(model)
            for weight, mask, _ in layer.pruning_vars]


def served_weights(model):
    return [weight.numpy() for _, weight in pruning.prunable_weights(model)]


def test_sparsity_follows_the_schedule_and_reaches_the_target(pruned_dir):
    record = model_flags_lib.read_model_flags(pruned_dir)
    assert record["pruning"] == {"pruning_target_sparsity": TARGET, "pruning_begin_step": BEGIN,
                                 "pruning_end_step": END, "pruning_frequency": FREQUENCY}
    paths = checkpoints.checkpoint_paths(pruned_dir)
    assert [checkpoints.checkpoint_step(path) for path in paths] == [2, 4, 6, 8, 10]
    for path in paths:
        step = checkpoints.checkpoint_step(path)
        expected = scheduled_sparsity(step)  # 0.5278, 0.7222, then 0.75
        pairs = checkpoint_pairs(pruned_dir, path)
        assert len(pairs) == 12  # 4 matrices x 2 NeXtVLAD streams, hidden, 2 SE gating, logistic
        zeros = total = 0
        for _, mask in pairs:
            assert set(np.unique(mask)) <= {0.0, 1.0}
            # tfmot keeps the round(n (1 - s)) largest magnitudes of each weight (at least one).
            kept = max(round(mask.size * (1.0 - expected)), 1)
            assert abs(int(mask.sum()) - kept) <= 1, (step, mask.shape)
            zeros += mask.size - int(mask.sum())
            total += mask.size
        assert zeros / total == pytest.approx(expected, abs=0.01), step
        served = checkpoints.load_model(pruned_dir, path)
        assert not pruning.is_pruned(served)
        weights = served_weights(served)
        for (raw, mask), weight in zip(pairs, weights):
            np.testing.assert_array_equal(weight, raw * mask)
        # The sparsity of the weights the model serves, counted with numpy.
        zeros_served = sum(np.count_nonzero(weight == 0) for weight in weights)
        assert zeros_served / sum(weight.size for weight in weights) == pytest.approx(
            expected, abs=0.01), step
        counters = [tf.train.load_variable(path, name)
                    for name, _ in tf.train.list_variables(path) if "pruning_step" in name]
        assert counters and all(counter == step for counter in counters)


def _model_and_optimizer_values(path):
    return {name: tf.train.load_variable(path, name) for name, _ in tf.train.list_variables(path)
            if name.startswith(("model/", "optimizer/"))}


def test_killed_mid_schedule_resume_equals_the_uninterrupted_run(data_dir, tmp_path):
    """Masks, weights, optimizer slots and the pruning counters bit for bit, under
    MirroredStrategy. (A model with batch norms resumes equal only to ~1e-7 there: each replica
    keeps its own moving statistics, a checkpoint their mean, and the masked batch norm shifts
    its batch moments by the moving mean. One device resumes them bit for bit.)"""
    uninterrupted = tmp_path / "uninterrupted"
    run_to_end(train_command(uninterrupted, data_dir, MOE_RUN))
    kill_after = random.SystemRandom().choice([3, 4, 5])  # after ckpt-2 or ckpt-4, before END
    train_dir = tmp_path / "killed"
    command = train_command(train_dir, data_dir, MOE_RUN)
    first = helpers.start(command)
    lines = []
    for line in first.stdout:
        lines.append(line)
        if re.search(rf"step {kill_after} \| loss", line):
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert any("Saved checkpoint" in line for line in lines), "".join(lines[-30:])
    saved = checkpoints.checkpoint_step(checkpoints.latest_checkpoint(str(train_dir)))
    assert 2 <= saved < END, (kill_after, saved)
    output = run_to_end(command)
    assert f"Resumed from {train_dir}/ckpt-{saved} at step {saved}" in output
    assert "global batch 4 on 2 replica(s)" in output
    got = _model_and_optimizer_values(str(train_dir / f"ckpt-{MAX_STEPS}"))
    want = _model_and_optimizer_values(str(uninterrupted / f"ckpt-{MAX_STEPS}"))
    assert sorted(got) == sorted(want)
    assert sum("mask" in name or "pruning_vars" in name for name in got) >= 3
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=f"{name} (killed after step "
                                      f"{kill_after}, resumed from ckpt-{saved})")


@pytest.fixture(scope="module")
def readers_run(pruned_dir, data_dir, tmp_path_factory):
    """eval.py, inference.py and export_ensemble.py on the pruned train dir, side by side, with
    no pruning option (model_flags.json says the dir is pruned): {name: (exit code, output)}
    and the paths they wrote."""
    root = tmp_path_factory.mktemp("readers")
    pattern = helpers.pattern(data_dir, "frame", "validate")
    paths = {"csv": str(root / "submission.csv"), "export": str(root / "export")}
    commands = {
        "eval": ("eval.py", f"--train_dir={pruned_dir}", f"--eval_data_pattern={pattern}",
                 "--batch_size=4", "--run_once"),
        "inference": ("inference.py", f"--train_dir={pruned_dir}",
                      f"--input_data_pattern={pattern}", f"--output_file={paths['csv']}",
                      "--top_k=3", "--batch_size=4"),
        "export": ("export_ensemble.py", f"--members={pruned_dir}",
                   f"--output_dir={paths['export']}", "--sparse_weights=0.5",
                   f"--eval_data_pattern={pattern}"),
    }
    processes = {name: helpers.start(helpers.python_command(*args))
                 for name, args in commands.items()}
    for name, process in processes.items():
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, f"{name}: {output[-3000:]}"
    return paths


def _validation_predictions(pruned_dir, data_dir):
    """(batch, predictions) of the stripped model of the newest checkpoint on every validation
    video (the Keras model itself, not a reader under test)."""
    pattern = helpers.pattern(data_dir, "frame", "validate")
    batch = next(iter(inputs.evaluation_dataset(readers.list_files(pattern), helpers.FRAME_DATA,
                                                1000)))
    model = checkpoints.load_model(pruned_dir)
    return batch, model, model(inputs.model_inputs(batch, helpers.FRAME_DATA))["predictions"]


def test_eval_py_and_inference_py_read_a_pruned_train_dir(readers_run, pruned_dir, data_dir):
    batch, _, predictions = _validation_predictions(pruned_dir, data_dir)
    predictions = predictions.numpy()
    with open(evaluation.metrics_path(pruned_dir, MAX_STEPS)) as handle:
        result = json.load(handle)
    assert result["gap"] == pytest.approx(
        metrics.gap(predictions, batch["labels"].numpy(), top_k=20), abs=1e-6)
    expected = {video_id.decode(): scores
                for video_id, scores in zip(batch["id"].numpy(), predictions)}
    with open(readers_run["csv"]) as handle:
        rows = handle.read().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == sorted(expected)
    for row in rows:
        video_id, pairs = row.split(",")
        values = pairs.split(" ")
        classes, scores = [int(value) for value in values[::2]], values[1::2]
        np.testing.assert_allclose([float(score) for score in scores],
                                   expected[video_id][classes], rtol=1e-5)
        np.testing.assert_allclose([float(score) for score in scores],
                                   np.sort(expected[video_id])[::-1][:3], rtol=1e-5)


def test_export_ensemble_py_stores_a_pruned_train_dir_sparse(readers_run, pruned_dir, data_dir):
    """export_ensemble.py --sparse_weights=0.5 of the train dir: each pruned matrix stored as
    mask bits + non-zeros, predictions equal to the stripped Keras model (1e-6)."""
    output_dir = readers_run["export"]
    with open(os.path.join(output_dir, "export_report.json")) as handle:
        report = json.load(handle)
    batch, model, expected = _validation_predictions(pruned_dir, data_dir)
    minimum = report.get("min_low_precision_elements", 0)
    large = {weight.name: weight.numpy() for _, weight in pruning.prunable_weights(model)
             if weight.shape.num_elements() >= minimum}
    stored = {row["variable"]: row for row in report["sparse_tensors"]}
    assert stored and set(stored) <= set(large), (sorted(stored), sorted(large))
    for name, row in stored.items():
        assert row["sparsity"] == pytest.approx(np.mean(large[name] == 0), abs=1e-9)
        assert row["sparsity"] == pytest.approx(TARGET, abs=0.01)
    features = inputs.model_inputs(batch, helpers.FRAME_DATA)
    served = tf.saved_model.load(output_dir).signatures["serving_default"](
        rgb=features["rgb"], audio=features["audio"],
        num_frames=features["num_frames"])["predictions"].numpy()
    np.testing.assert_allclose(served, expected.numpy(), atol=1e-6, rtol=0)


def test_checkpoint_averaging_keeps_the_newest_masks(pruned_dir):
    """ckpt-2, 4 and 6 have sparsity 0.53, 0.72 and 0.75: the average must be the mean of the
    served weights with the zeros of ckpt-6, not a refilled matrix."""
    spec = members_lib.parse_member(f"{pruned_dir}@2:6", None)
    member = members_lib.load_member(spec)
    assert [checkpoints.checkpoint_step(path) for path in member.checkpoints] == [2, 4, 6]
    assert not pruning.is_pruned(member.model)
    per_checkpoint = [checkpoint_pairs(pruned_dir, os.path.join(pruned_dir, f"ckpt-{step}"))
                      for step in (2, 4, 6)]
    newest_masks = [mask for _, mask in per_checkpoint[-1]]
    for index, weight in enumerate(served_weights(member.model)):
        mean = np.mean([raw * mask for raw, mask in
                        (pairs[index] for pairs in per_checkpoint)], axis=0, dtype=np.float64)
        np.testing.assert_allclose(weight, mean * newest_masks[index], rtol=1e-6, atol=1e-9)
        assert np.count_nonzero(weight == 0) >= np.count_nonzero(newest_masks[index] == 0)
    assert pruning.sparsity(member.model) == pytest.approx(TARGET, abs=0.01)


def test_every_branch_of_a_mod_tree_is_pruned(data_dir, tmp_path):
    config = helpers.train_config(
        tmp_path, data_dir, frame_level=True, model="MixtureModel",
        model_hparams={"mixture_base_model": "FrameLevelLogisticModel", "mod_tree": "2x2"},
        max_steps=2, pruning=PruningConfig(0.5, 0, 2, 1))
    result = trainer.train(config)
    assert result.step == 2
    model = checkpoints.load_model(str(tmp_path))
    leaves = [model.subtree(path) for path in ((0, 0), (0, 1), (1, 0), (1, 1))]
    for leaf in leaves:
        (_, kernel), = pruning.prunable_weights(leaf)  # the logistic classifier's matrix
        values = kernel.numpy()
        assert np.count_nonzero(values == 0) == values.size // 2, leaf.name


def _parse_train_flags(argv):
    flag_values = flags.FlagValues()
    options.define_flags(TrainConfig, flag_values)
    hparams.define_flags(flag_values)
    flag_values(["train.py", *argv])
    return options.from_flags(TrainConfig, flag_values)


@pytest.mark.parametrize("argv, message", [
    (["--pruning_target_sparsity=1"],
     "--pruning_target_sparsity=1.0 must be in [0, 1) (0: no pruning)"),
    (["--pruning_target_sparsity=0.5", "--pruning_begin_step=300", "--pruning_end_step=200"],
     "--pruning_end_step=200 must be after --pruning_begin_step=300"),
    (["--pruning_target_sparsity=0.5", "--pruning_end_step=250", "--pruning_frequency=100"],
     "--pruning_end_step=250 minus --pruning_begin_step=0 (250) must be a multiple of "
     "--pruning_frequency=100"),
])
def test_bad_pruning_values_name_the_flag(argv, message):
    with pytest.raises(ValueError) as error:
        _parse_train_flags(argv)
    assert str(error.value).startswith(message)


def test_pruning_flags_become_the_config_and_the_model_flags_record():
    config = _parse_train_flags(["--pruning_target_sparsity=0.5", "--pruning_end_step=300"])
    assert config.pruning == PruningConfig(0.5, 0, 300, 100)
    assert model_flags_lib.model_flags_from_config(config)["pruning"] == {
        "pruning_target_sparsity": 0.5, "pruning_begin_step": 0, "pruning_end_step": 300,
        "pruning_frequency": 100}
    unpruned = _parse_train_flags(["--pruning_end_step=5"])  # no target: off, nothing recorded
    assert "pruning" not in model_flags_lib.model_flags_from_config(unpruned)


def test_negative_sparsity_is_refused_by_the_flag_parser():
    with pytest.raises(flags.IllegalFlagValueError, match="pruning_target_sparsity"):
        _parse_train_flags(["--pruning_target_sparsity=-0.5"])


def test_train_py_refuses_bad_pruning_values_before_writing(data_dir, tmp_path):
    train_dir = tmp_path / "never_written"
    process = helpers.start(helpers.python_command(
        "train.py", f"--train_dir={train_dir}",
        f"--train_data_pattern={helpers.pattern(data_dir, 'video', 'train')}",
        "--pruning_target_sparsity=0.5", "--pruning_begin_step=10", "--pruning_end_step=10"))
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1, output
    assert helpers.last_error_line(output) == (
        "train.py: error: --pruning_end_step=10 must be after --pruning_begin_step=10")
    assert not train_dir.exists()


def test_a_model_without_prunable_layer_is_refused_before_writing(data_dir, tmp_path,
                                                                  monkeypatch):
    inputs_ = keras.Input((4,))
    plain = keras.Model(inputs_, keras.layers.Dropout(0.1)(inputs_), name="no_matrices")
    with pytest.raises(ValueError, match=r"--pruning_target_sparsity=0.5: model 'no_matrices' "
                                         "has no prunable layer"):
        pruning.prune(plain, 0.5, 0, 10, 1)
    # The trainer builds the model before writing model_flags.json: a zoo model whose weights
    # tfmot cannot prune leaves the train dir empty.
    monkeypatch.setattr(pruning, "prunable_weights", lambda model: [])
    config = helpers.train_config(tmp_path / "run", data_dir,
                                  pruning=PruningConfig(0.5, 0, 10, 1))
    with pytest.raises(ValueError, match="has no prunable layer"):
        trainer.Trainer(config)
    assert not (tmp_path / "run" / "model_flags.json").exists()


def test_prune_keeps_the_layers_without_prunable_weights_unwrapped():
    keras.utils.set_random_seed(3)
    model = frame_level_models.build("FrameSkippingModel", 4, feature_names="rgb,audio",
                                     feature_sizes="8,4", student_base_model="NeXtVLADModel",
                                     student_frames=2, frame_selection="uniform",
                                     nextvlad_cluster_size=4, nextvlad_hidden_size=8, groups=2)
    pruned = pruning.prune(model, 0.5, 0, 2, 1)
    # The student's frame selection (a layer tfmot does not know), the inputs, the concatenation,
    # dropout and batch norm stay unwrapped; the base model inside is entered.
    wrapped = {layer.layer.name for layer in pruning.pruning_layers(pruned)}
    assert wrapped == {"rgb_nextvlad", "audio_nextvlad", "hidden", "se_gating", "logistic"}
    assert dataclasses.asdict(PruningConfig()) == {
        "pruning_target_sparsity": 0.0, "pruning_begin_step": 0, "pruning_end_step": 10000,
        "pruning_frequency": 100}
