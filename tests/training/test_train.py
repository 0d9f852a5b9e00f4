"""The training library: flags, learning-rate schedule, clipping, loss, resume, NaN stop."""
import json
import math
import os
import re
import signal

import numpy as np
import pytest
from absl import flags

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from frame_level_models import hparams
from yt8m.core import training_protocol
from yt8m.core import option_groups
from yt8m.core import options
from yt8m.core.config import LocalDevices, TrainConfig
from yt8m.core.model_flags import ModelFlagsMismatchError
from yt8m.data import records
from yt8m.training import checkpoints
from yt8m.training import objective
from yt8m.training import trainer
from yt8m.training.optimizers import make_optimizer
from yt8m.training.schedules import examples_staircase_decay
from yt8m.losses import get_label_loss

import training_helpers as helpers


def _parse_train_flags(argv):
    flag_values = flags.FlagValues()
    options.define_flags(TrainConfig, flag_values)
    options.define_flags(LocalDevices, flag_values)
    hparams.define_flags(flag_values)
    flag_values(["train.py", *argv])
    return flag_values, options.from_flags(
        TrainConfig, flag_values,
        model_hparams=hparams.hparams_from_flags(flag_values, flag_values.model))


def test_train_flag_defaults_are_the_starters():
    _, config = _parse_train_flags([])
    assert (config.train_dir, config.model, config.batch_size) == (
        "/tmp/yt8m_model/", "LogisticModel", 1024)
    assert (config.base_learning_rate, config.learning_rate_decay,
            config.learning_rate_decay_examples) == (0.01, 0.95, 4000000)
    assert (config.num_epochs, config.max_steps, config.regularization_penalty) == (5, None, 1.0)
    assert (config.label_loss, config.optimizer, config.clip_gradient_norm) == (
        "CrossEntropyLoss", "AdamOptimizer", 1.0)
    assert (config.export_model_steps, config.start_new_model) == (1000, False)
    assert (config.data.feature_names, config.data.feature_sizes) == (("mean_rgb",), (1024,))
    assert (config.data.frame_features, config.data.segment_labels) == (False, False)
    assert (config.data.num_classes, config.data.max_frames, config.data.num_readers) == (
        3862, 300, 8)


def test_train_flags_become_the_config_and_the_models_hparams():
    flag_values, config = _parse_train_flags([
        "--train_dir=/runs/a", "--train_data_pattern=/d/train*", "--feature_names=rgb, audio",
        "--feature_sizes=1024,128", "--frame_features", "--model=NeXtVLADModel",
        "--batch_size=16", "--max_steps=7", "--num_classes=10", "--max_frames=50", "--groups=4",
        "--netvlad_cluster_size=99", "--label_loss=HingeLoss", "--num_cpu_devices=2"])
    assert config.data.feature_names == ("rgb", "audio")
    assert config.data.feature_sizes == (1024, 128)
    assert (config.data.num_classes, config.data.max_frames) == (10, 50)
    assert (config.train_dir, config.train_data_pattern) == ("/runs/a", "/d/train*")
    assert (config.batch_size, config.max_steps, config.label_loss) == (16, 7, "HingeLoss")
    # Only the hparams NeXtVLAD uses are recorded (netvlad_cluster_size is NetVLAD's).
    assert config.model_hparams["groups"] == 4
    assert "netvlad_cluster_size" not in config.model_hparams
    assert flag_values.num_cpu_devices == 2


@pytest.mark.parametrize("names,sizes,message", [
    ("rgb,audio", "1024", "--feature_names has 2 names ('rgb,audio') but --feature_sizes has 1 "
                          "sizes ('1024'); give one size per feature"),
    ("rgb", "big", "--feature_sizes='big': 'big' is not an integer"),
    ("rgb,rgb", "1,1", "--feature_names='rgb,rgb' repeats a name"),
])
def test_feature_flag_errors_name_the_flags(names, sizes, message):
    with pytest.raises(ValueError) as error:
        option_groups.parse_features(names, sizes)
    assert str(error.value) == message


def test_learning_rate_decays_by_staircase_on_examples_seen():
    # base 0.01, x0.5 every 1000 examples, 64 examples a step: 1000/64 = 15.625 steps per decay.
    schedule = examples_staircase_decay(0.01, 0.5, 1000, 64)
    expected = {0: 0.01, 15: 0.01,          # 960 examples
                16: 0.005,                  # 1024 examples: floor(1.024) = 1
                31: 0.005,                  # 1984
                32: 0.0025,                 # 2048
                160: 0.01 * 0.5 ** 10}      # 10240 examples
    for step, learning_rate in expected.items():
        assert float(schedule(step)) == pytest.approx(learning_rate, rel=1e-6), step


@pytest.mark.parametrize("on_variable_devices", [False, True])  # True: the MOD trees' optimizer
def test_gradient_clipping_is_per_variable_not_global(on_variable_devices):
    optimizer = make_optimizer("GradientDescentOptimizer", 1.0, clip_gradient_norm=1.0,
                               on_variable_devices=on_variable_devices)
    big, small = tf.Variable([0.0, 0.0]), tf.Variable([0.0, 0.0])
    optimizer.apply_gradients([(tf.constant([3.0, 4.0]), big), (tf.constant([0.3, 0.4]), small)])
    # Per variable: [3, 4] (norm 5) becomes [0.6, 0.8]; [0.3, 0.4] (norm 0.5) is left alone.
    # A global-norm clip would have scaled both by 1 / sqrt(25.25).
    np.testing.assert_allclose(big.numpy(), [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(small.numpy(), [-0.3, -0.4], rtol=1e-6)


def _apply_steps(optimizer, gradients, initial):
    variable = tf.Variable(np.asarray(initial, np.float32))
    for gradient in gradients:
        optimizer.apply_gradients([(tf.constant(gradient, tf.float32), variable)])
    return variable.numpy()


GRADIENTS = [np.array([0.5, -2.0, 1e-3]), np.array([-1.0, 0.25, 3.0]), np.array([2.0, 2.0, -4.0])]
INITIAL = np.array([1.0, -1.0, 0.5])


def test_optimizers_are_tf1s_with_its_constants():
    """Three steps of each --optimizer against the TF1 update (tests/reference/starter_numpy.py:
    Adam epsilon 1e-8, RMSProp decay 0.9 / epsilon 1e-10 / accumulator starting at ONES, Adagrad
    accumulator 0.1 without epsilon)."""
    from reference import starter_numpy
    lr = 0.1
    var, m, v = INITIAL, np.zeros(3), np.zeros(3)
    for step, gradient in enumerate(GRADIENTS, start=1):
        var, m, v = starter_numpy.adam_step(var, gradient, m, v, step, lr)
    np.testing.assert_allclose(
        _apply_steps(make_optimizer("AdamOptimizer", lr, 0.0), GRADIENTS, INITIAL), var,
        rtol=1e-5)
    var, rms, mom = INITIAL, np.ones(3), np.zeros(3)
    for gradient in GRADIENTS:
        var, rms, mom = starter_numpy.rmsprop_step(var, gradient, rms, mom, lr)
    np.testing.assert_allclose(
        _apply_steps(make_optimizer("RMSPropOptimizer", lr, 0.0), GRADIENTS, INITIAL), var,
        rtol=1e-5)
    var, accumulator = INITIAL, np.full(3, 0.1)
    for gradient in GRADIENTS:
        var, accumulator = starter_numpy.adagrad_step(var, gradient, accumulator, lr)
    np.testing.assert_allclose(
        _apply_steps(make_optimizer("AdagradOptimizer", lr, 0.0), GRADIENTS, INITIAL), var,
        rtol=1e-5)
    # MomentumOptimizer (the starter's raises TypeError: no default momentum): momentum 0.9,
    # the TF1 update at a constant learning rate.
    var, accumulator = INITIAL, np.zeros(3)
    for gradient in GRADIENTS:
        var, accumulator = starter_numpy.momentum_step(var, gradient, accumulator, lr, 0.9)
    np.testing.assert_allclose(
        _apply_steps(make_optimizer("MomentumOptimizer", lr, 0.0), GRADIENTS, INITIAL), var,
        rtol=1e-5)
    # The Keras constants differ (what the TF1 names must not give): Adam epsilon 1e-7.
    assert make_optimizer("Adam", lr, 0.0).epsilon == 1e-7
    assert make_optimizer("AdamOptimizer", lr, 0.0).epsilon == 1e-8


def test_adadelta_optimizer_is_tf1s():
    """Against tf.compat.v1.train.AdadeltaOptimizer itself (rho 0.95, epsilon 1e-8)."""
    graph = tf.Graph()
    with graph.as_default():
        variable = tf.compat.v1.get_variable("v", initializer=tf.constant(INITIAL, tf.float64))
        gradient = tf.compat.v1.placeholder(tf.float64, [3])
        update = tf.compat.v1.train.AdadeltaOptimizer(0.5).apply_gradients([(gradient, variable)])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for value in GRADIENTS:
                session.run(update, {gradient: value})
            expected = session.run(variable)
    np.testing.assert_allclose(
        _apply_steps(make_optimizer("AdadeltaOptimizer", 0.5, 0.0), GRADIENTS, INITIAL),
        expected, rtol=1e-5)


def _two_replica_step(data_dir, tmp_path, average, precision="float32"):
    import subprocess
    import sys
    output = str(tmp_path / (("average" if average else "sum") + f"-{precision}.npz"))
    command = [sys.executable, os.path.join(helpers.REPO, "tests", "training",
                                            "two_replica_step.py"), data_dir, output,
               f"--mixed_precision={precision}"]
    environment = dict(os.environ, PYTHONPATH=helpers.REPO, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(command + (["--average_replica_gradients"] if average else []),
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(output))


def _tower_gradients(run, rows):
    """The starter's tower gradient of CrossEntropyLoss (eps 1e-5) on sigmoid(l2n(x) W + b) plus
    the slim L2 1e-8/2 sum(W^2), written out in numpy."""
    x = np.concatenate([run["mean_rgb"], run["mean_audio"]], axis=1)[rows].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = run["labels"][rows].astype(np.float64)
    kernel, bias = run["kernel_before"].astype(np.float64), run["bias_before"].astype(np.float64)
    p = 1 / (1 + np.exp(-(x @ kernel + bias)))
    d_p = -(y / (p + 1e-5) - (1 - y) / (1 - p + 1e-5)) / len(y)  # mean over the tower batch
    d_z = d_p * p * (1 - p)
    return [x.T @ d_z + 1e-8 * kernel, d_z.sum(axis=0)]


@pytest.mark.parametrize("average, precision", [
    (False, "float32"), (True, "float32"),
    # float16 compute with loss scaling: the scaled gradients are unscaled before the sum and
    # the clipping; float16's 11 significant bits bound the difference to the float64 oracle.
    (False, "mixed_float16")])
def test_two_replicas_sum_their_gradients_then_clip_like_the_starters_towers(
        small_dataset, tmp_path, average, precision):
    """Two replicas of batch 2 (logical CPUs): the starter's utils.combine_gradients SUMS the
    towers' gradients, then clip_gradient_norms clips each variable to norm 1.0 (oracles in
    tests/reference/starter_numpy.py); --average_replica_gradients takes their mean instead."""
    from reference import starter_numpy
    run = _two_replica_step(small_dataset, tmp_path, average, precision)
    tolerance = (dict(rtol=1e-4, atol=1e-6) if precision == "float32"
                 else dict(rtol=1e-2, atol=1e-3))
    towers = [_tower_gradients(run, slice(0, 2)), _tower_gradients(run, slice(2, 4))]
    combined = starter_numpy.combine_gradients(towers)
    if average:
        combined = [gradient / 2 for gradient in combined]
    # Summed, the kernel's gradient is over the clip norm (clipped); averaged, under it.
    assert (np.linalg.norm(combined[0]) > 1.0) != average
    clipped = starter_numpy.clip_gradient_norms(combined, 1.0)
    np.testing.assert_allclose(run["kernel_after"], run["kernel_before"] - clipped[0],
                               **tolerance)
    np.testing.assert_allclose(run["bias_after"], run["bias_before"] - clipped[1], **tolerance)


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ValueError, match=r"--optimizer='Lion' is not one of: AdamOptimizer, "):
        make_optimizer("Lion", 0.1, 1.0)


def test_training_loss_is_label_plus_penalty_times_model_losses_plus_auxiliary():
    inputs = keras.Input(shape=(3,))
    logits = keras.layers.Dense(2, kernel_regularizer=keras.regularizers.l2(0.5))(inputs)
    model = keras.Model(inputs, {"predictions": keras.layers.Activation("sigmoid")(logits),
                                 "logits": logits})

    class WithHooks(training_protocol.PlainTrainingModel):
        def auxiliary_loss(self, labels, outputs, label_weights=None):
            return tf.reduce_sum(labels) * 0.125

        def auxiliary_predictions(self, outputs):  # scored with the label loss, unweighted
            return [(tf.fill(tf.shape(outputs["logits"]), 0.25), None)]

        def regularization_terms(self, outputs):  # multiplied by the penalty
            return tf.constant(0.75)

    x = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]], np.float32)
    y = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    plain = objective.training_loss(model, model(x), tf.constant(y), None,
                                    get_label_loss("CrossEntropyLoss"), regularization_penalty=3.0)
    assert float(plain["auxiliary_loss"]) == 0.0
    losses = objective.training_loss(WithHooks(model), model(x), tf.constant(y), None,
                                     get_label_loss("CrossEntropyLoss"),
                                     regularization_penalty=3.0)
    kernel, bias = (w.numpy() for w in model.layers[1].weights)

    def starter_cross_entropy(p):  # the starter's CrossEntropyLoss on probabilities, eps 1e-5
        return np.mean(np.sum(-(y * np.log(p + 1e-5) + (1 - y) * np.log(1 - p + 1e-5)), axis=1))

    label = starter_cross_entropy(1 / (1 + np.exp(-(x @ kernel + bias))))
    regularization = 0.5 * np.sum(kernel ** 2)
    auxiliary = 3 * 0.125 + starter_cross_entropy(np.full((2, 2), 0.25))
    assert float(plain["label_loss"]) == pytest.approx(label, rel=1e-5)
    assert float(plain["total_loss"]) == pytest.approx(label + 3.0 * regularization, rel=1e-5)
    assert float(losses["label_loss"]) == pytest.approx(label, rel=1e-5)
    assert float(losses["regularization_loss"]) == pytest.approx(regularization + 0.75,
                                                                 rel=1e-5)
    assert float(losses["auxiliary_loss"]) == pytest.approx(auxiliary, rel=1e-5)
    assert float(losses["total_loss"]) == pytest.approx(
        label + 3.0 * (regularization + 0.75) + auxiliary, rel=1e-5)


class _KernelDecay(training_protocol.TrainingModel, keras.Model):
    """A training model of its own around the built model: no label loss, an extra loss term
    a * ||kernel||^2, half of the tape's gradients, and the video ids passed to its call."""

    label_loss_weight = 0.0
    extra_batch_keys = ("id",)

    def __init__(self, model, weight):
        super().__init__()
        self.inner = model
        self.weight = weight
        self.kernel = next(v for v in model.trainable_variables if "kernel" in v.name)
        object.__setattr__(self, "input_keys", None)

    def call(self, inputs, training=None):
        object.__setattr__(self, "input_keys", sorted(inputs))  # what the trainer passed
        return self.inner({k: v for k, v in inputs.items() if k != "id"}, training=training)

    def auxiliary_loss(self, labels, outputs, label_weights=None):
        return self.weight * tf.reduce_sum(tf.square(self.kernel))

    def compute_gradients(self, tape, loss, variables):
        return [0.5 * gradient for gradient in tape.gradient(loss, variables)]


def test_a_custom_training_model_trains_through_the_protocol(small_dataset, tmp_path):
    weight, learning_rate, steps = 10.0, 0.01, 5
    config = helpers.train_config(
        tmp_path / "custom", small_dataset, max_steps=steps, optimizer="GradientDescentOptimizer",
        base_learning_rate=learning_rate, learning_rate_decay=1.0, clip_gradient_norm=0.0,
        regularization_penalty=0.0)
    wrappers = []

    def factory(model):
        wrappers.append(_KernelDecay(model, weight))
        return wrappers[0]

    run = trainer.Trainer(config, training_model_factory=factory)
    wrapper = wrappers[0]
    assert run.training_model is wrapper
    kernel, bias = wrapper.kernel.numpy(), [v.numpy() for v in run.model.trainable_variables
                                            if "bias" in v.name]
    result = run.run()
    assert result.step == steps
    assert wrapper.input_keys == ["id", "mean_audio", "mean_rgb"]
    # Loss a * ||w||^2 alone; gradient halved: 0.5 * 2a w = a w, so SGD gives
    # w_n = (1 - lr * a)^n w_0, and the loss of the last step is that of w_{n-1}.
    factor = 1.0 - learning_rate * weight
    np.testing.assert_allclose(wrapper.kernel.numpy(), kernel * factor ** steps, rtol=1e-5,
                               atol=1e-9)
    for before, variable in zip(bias, [v for v in run.model.trainable_variables
                                       if "bias" in v.name]):
        np.testing.assert_array_equal(variable.numpy(), before)  # no label loss: no gradient
    assert result.last_loss == pytest.approx(
        weight * np.sum(kernel ** 2) * factor ** (2 * (steps - 1)), rel=1e-5)


def _weights(model):
    return [w.numpy() for w in model.weights]


@pytest.fixture(scope="module")
def uninterrupted(small_dataset, tmp_path_factory):
    """14 steps in one go (3 epochs of 42 videos at batch 4 = 30 steps: crosses an epoch end)."""
    train_dir = tmp_path_factory.mktemp("uninterrupted")
    run = trainer.Trainer(helpers.train_config(train_dir, small_dataset, max_steps=14))
    result = run.run()
    return train_dir, run, result


def test_resume_equals_uninterrupted_training(small_dataset, tmp_path, uninterrupted):
    _, reference, reference_result = uninterrupted
    first = trainer.Trainer(helpers.train_config(tmp_path, small_dataset, max_steps=9))
    assert first.run().step == 9
    resumed = trainer.Trainer(helpers.train_config(tmp_path, small_dataset, max_steps=14))
    assert resumed.restored_from.endswith("ckpt-9")
    assert resumed.step == 9
    # The same learning rate as the uninterrupted run at step 9: 0.01 * 0.5^floor(9*4/8).
    assert float(resumed.learning_rate(resumed.step)) == pytest.approx(0.01 * 0.5 ** 4)
    result = resumed.run()
    assert (result.step, reference_result.step) == (14, 14)
    assert result.stop_reason == "max_steps"
    assert result.last_loss == reference_result.last_loss
    for got, want in zip(_weights(resumed.model), _weights(reference.model)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(resumed.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_different_model_is_refused_unless_start_new_model(small_dataset, video_logistic_run,
                                                              tmp_path):
    train_dir = helpers.copy_tree(video_logistic_run, tmp_path / "run")  # LogisticModel, 2 steps
    other = helpers.train_config(train_dir, small_dataset, model="MoeModel", max_steps=2)
    with pytest.raises(ModelFlagsMismatchError) as error:
        trainer.Trainer(other)
    assert str(error.value) == (
        f"Model flags do not match the existing {train_dir}/model_flags.json:\n"
        "  model: 'LogisticModel' in the file, 'MoeModel' now\n"
        "Delete the file, change --train_dir, or pass --start_new_model.")
    fresh = trainer.Trainer(helpers.train_config(train_dir, small_dataset, model="MoeModel",
                                                 max_steps=2, start_new_model=True))
    assert (fresh.restored_from, fresh.step) == ("", 0)
    assert fresh.run().checkpoint.endswith("ckpt-2")


def test_a_train_dir_from_before_an_hparam_existed_resumes_at_its_default(
        small_dataset, video_moe_run, tmp_path):
    train_dir = helpers.copy_tree(video_moe_run, tmp_path / "run")  # MoeModel, 2 steps
    # What train.py records today for MoeModel: every hparam of the model, bn_momentum included.
    recorded_now = _parse_train_flags(["--model=MoeModel"])[1].model_hparams
    assert recorded_now["bn_momentum"] == 0.999
    # The file as a train.py from before --bn_momentum wrote it.
    path = os.path.join(train_dir, "model_flags.json")
    with open(path) as handle:
        old_flags = json.load(handle)
    old_flags["hparams"] = {name: value for name, value in recorded_now.items()
                            if name != "bn_momentum"}
    with open(path, "w") as handle:
        json.dump(old_flags, handle)

    other = helpers.train_config(train_dir, small_dataset, model="MoeModel", max_steps=3,
                                 model_hparams=dict(recorded_now, bn_momentum=0.9))
    with pytest.raises(ModelFlagsMismatchError, match=re.escape(
            "  hparams.bn_momentum: unset (default 0.999) in the file, 0.9 now\n")):
        trainer.Trainer(other)
    resumed = trainer.Trainer(helpers.train_config(train_dir, small_dataset, model="MoeModel",
                                                   max_steps=3, model_hparams=recorded_now))
    assert (os.path.basename(resumed.restored_from), resumed.step) == ("ckpt-2", 2)
    assert resumed.run().checkpoint.endswith("ckpt-3")
    with open(path) as handle:
        assert json.load(handle) == old_flags  # the record is left as it was


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_dataset, tmp_path, uninterrupted):
    train_dir, reference, _ = uninterrupted
    nan_file = str(tmp_path / "nan.tfrecord")
    with tf.io.TFRecordWriter(nan_file) as writer:
        for index in range(8):
            example = records.make_video_example(
                f"nan{index}", [1],
                {"mean_rgb": np.full(1024, np.nan), "mean_audio": np.zeros(128)})
            writer.write(example.SerializeToString())
    good = checkpoints.latest_checkpoint(str(train_dir))
    config = helpers.train_config(train_dir, small_dataset, train_data_pattern=nan_file,
                                  max_steps=20)
    with pytest.raises(trainer.NonFiniteLossError) as error:
        trainer.train(config)
    # ckpt-14 ended the earlier run: the NaN at step 15 is the first loss measured on its
    # weights, so no checkpoint is known to be good (issue 17).
    assert str(error.value) == (
        f"Loss is nan at step 15; stopped without saving. No checkpoint is known to be good; the "
        f"newest, {good}, holds the weights this loss measured: train.py resumes from the newest "
        "checkpoint, so remove it (its .index and .data files) to resume from an earlier one.")
    assert checkpoints.latest_checkpoint(str(train_dir)) == good
    model = checkpoints.load_model(str(train_dir))
    for got, want in zip(_weights(model), _weights(reference.model)):
        np.testing.assert_array_equal(got, want)
    assert not any(math.isnan(float(np.sum(w))) for w in _weights(model))
    assert os.path.basename(good) == "ckpt-14"


def _read_until(process, predicate, deadline_lines=5000):
    """Reads the merged output line by line until predicate(line) holds; returns all lines."""
    lines = []
    for _ in range(deadline_lines):
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise AssertionError("train.py ended early:\n" + "".join(lines[-40:]))
        lines.append(line)
        if predicate(line):
            return lines
    process.kill()
    raise AssertionError("expected line never came:\n" + "".join(lines[-40:]))


def test_killed_run_resumes_at_the_saved_step_and_sigterm_saves(small_dataset, tmp_path):
    train_dir = tmp_path / "run"
    command = helpers.python_command(
        "train.py", f"--train_dir={train_dir}",
        f"--train_data_pattern={helpers.pattern(small_dataset, 'frame', 'train')}",
        "--frame_features", "--feature_names=rgb,audio", "--feature_sizes=1024,128",
        "--model=FrameLevelLogisticModel", f"--num_classes={helpers.NUM_CLASSES}",
        f"--max_frames={helpers.MAX_FRAMES}", "--num_cpu_devices=2", "--batch_size=2",
        "--base_learning_rate=0.01", "--learning_rate_decay=0.9",
        "--learning_rate_decay_examples=8", "--num_epochs=1000", "--export_model_steps=3",
        "--log_every_steps=1", "--num_readers=2", "--shuffle_seed=5")
    first = helpers.start(command)
    _read_until(first, lambda line: re.search(r"Saved checkpoint .*ckpt-6$", line.strip()))
    first.send_signal(signal.SIGKILL)
    first.wait()
    saved_step = checkpoints.checkpoint_step(checkpoints.latest_checkpoint(str(train_dir)))
    assert saved_step >= 6 and saved_step % 3 == 0

    second = helpers.start(command)
    resumed = re.compile(r"Resumed from (\S+) at step (\d+) \(learning rate ([0-9.e-]+)\)")
    lines = _read_until(second, resumed.search)
    path, step, learning_rate = resumed.search(lines[-1]).groups()
    assert (path, int(step)) == (str(train_dir / f"ckpt-{saved_step}"), saved_step)
    # Two replicas x batch 2 = 4 examples a step; decay x0.9 every 8 examples.
    expected_rate = 0.01 * 0.9 ** math.floor(saved_step * 4 / 8)
    assert float(learning_rate) == pytest.approx(expected_rate, rel=1e-5)
    progress = re.compile(r"step (\d+) \| loss \S+ \| learning rate ([0-9.e-]+) \|")
    lines = _read_until(second, progress.search)
    first_step, first_rate = progress.search(lines[-1]).groups()
    assert int(first_step) == saved_step + 1  # the step after the checkpoint, not step 1
    assert float(first_rate) == pytest.approx(expected_rate, rel=1e-5)

    second.send_signal(signal.SIGTERM)
    output = second.communicate(timeout=120)[0]
    assert second.returncode == 0, output
    assert "Received SIGTERM: saving a checkpoint after this step, then exiting." in output
    stopped = re.search(r"stopped at step (\d+) \(signal SIGTERM\); checkpoint (\S+)", output)
    assert stopped, output
    final_step = int(stopped.group(1))
    assert final_step > saved_step
    assert stopped.group(2) == str(train_dir / f"ckpt-{final_step}")
    assert checkpoints.latest_checkpoint(str(train_dir)) == stopped.group(2)
