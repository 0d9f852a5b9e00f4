"""Distillation through the trainer: the hierarchical LSTM teacher, frame-skipping students, serial
and parallel teacher-student training, multi-teacher soft labels from a teacher cache, graph edge
weights, and train.py with the distillation flags. (The math itself: test_distillation_math.py.)"""
import dataclasses
import json
import os

import numpy as np
import pytest
from absl import flags

import yt8m  # noqa: F401
import tensorflow as tf

import frame_level_models
from frame_level_models import hierarchical_lstm
from yt8m.distillation import distill_flags
from yt8m.distillation import modes
from yt8m.distillation import teacher_cache
from yt8m.distillation import teachers as teachers_lib
from yt8m.distillation import training_setup
from yt8m.distillation.distillation_model import (CachedTeachers, DistillationModel,
                                                  LiveTeachers, teacher_key)
from yt8m.distillation.graph_distillation import GraphDistillationModel
from yt8m.distillation.multi_teacher import SOFT_LABELS, MultiTeacherModel
from yt8m.distillation.config import DistillConfig
from yt8m.losses import get_label_loss
from yt8m.training import checkpoints
from yt8m.training import inputs
from yt8m.training import objective
from yt8m.training import trainer

import training_helpers as helpers

SIZES = (8, 4)
# MoE classifier: no logits output. Deterministic evaluation: a teacher cache must give the
# teacher's on-the-fly outputs (the starter's DbofModel samples frames at evaluation too).
DBOF = dict(dbof_cluster_size=16, dbof_hidden_size=8, deterministic_eval=True)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def _config(root, name, data_dir, model="FrameLevelLogisticModel", hparams=None, **overrides):
    overrides.setdefault("max_steps", 3)
    return helpers.train_config(os.path.join(root, name), data_dir, frame_level=True, model=model,
                                model_hparams=dict(hparams or {}), **overrides)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_dataset, frame_logistic_run):
    """Data and two trained teachers: the shared logistic model (embedding 1152, logits) and a
    DBoF model (embedding 8, MoE: no logits)."""
    root = str(tmp_path_factory.mktemp("distill"))
    trainer.train(_config(root, "dbof", small_dataset, "DbofModel", DBOF, max_steps=2))
    return {"root": root, "data": small_dataset,
            "teachers": [frame_logistic_run, os.path.join(root, "dbof")]}


@pytest.fixture(scope="module")
def batch(workspace):
    files = inputs.require_files(helpers.pattern(workspace["data"], "frame", "train"), "pattern")
    return next(iter(inputs.evaluation_dataset(files, helpers.FRAME_DATA, 8)))


def _features(batch, with_ids=False):
    features = inputs.model_inputs(batch, helpers.FRAME_DATA)
    if with_ids:
        features["id"] = batch["id"]
    return features


# ---------------------------------------------------------------- models

def test_hierarchical_lstm_counts_masks_and_flops():
    cells, layers, block = 6, 2, 3
    model = frame_level_models.build(
        "HierarchicalLstmModel", 5, feature_names="rgb,audio", feature_sizes=SIZES,
        lstm_cells=cells, lstm_layers=layers, hlstm_block_frames=block,
        video_level_classifier_model="LogisticModel")

    def lstm_params(size):  # kernel, recurrent kernel, bias of each layer
        return sum(4 * cells * (s + cells) + 4 * cells for s in [size] + [cells] * (layers - 1))
    per_stream = [lstm_params(size) + lstm_params(cells) for size in SIZES]
    assert model.count_params() == sum(per_stream) + (2 * cells * 5 + 5)

    rng = np.random.default_rng(0)
    num_frames = np.array([7, 3, 1, 9], np.int32)
    batch = {name: rng.normal(size=(4, 9, size)).astype(np.float32)
             for name, size in zip(("rgb", "audio"), SIZES)}
    for name in ("rgb", "audio"):
        for row, n in enumerate(num_frames):
            batch[name][row, n:] = 0.0
    garbage = {name: np.concatenate([np.where(np.arange(9)[None, :, None] < num_frames[:, None,
                                                                                     None],
                                              value, rng.normal(9, 5, value.shape)),
                                     rng.normal(9, 5, (4, 5, value.shape[2]))], axis=1)
                      .astype(np.float32) for name, value in batch.items()}
    plain = model({**batch, "num_frames": num_frames})["logits"].numpy()
    padded = model({**garbage, "num_frames": num_frames})["logits"].numpy()
    np.testing.assert_allclose(padded, plain, atol=1e-6)

    # 300 frames, blocks of 20 (15 blocks), 1 layer of 4 cells, one stream of 10, 3 classes:
    # lower 300 * 2*4*4*(10+4), upper 15 * 2*4*4*(4+4), logistic 2*4*3.
    assert hierarchical_lstm.inference_flops(300, (10,), 4, 1, 20, 3) == (
        300 * 448 + 15 * 256 + 24)


def test_frame_skipping_student_sees_only_its_frames():
    base_hparams = dict(feature_names="rgb,audio", feature_sizes=SIZES)
    student = frame_level_models.build(
        "FrameSkippingModel", 5, student_base_model="FrameLevelLogisticModel", student_frames=4,
        frame_selection="random", **base_hparams)
    base = student.get_layer("FrameLevelLogisticModel")
    rng = np.random.default_rng(1)
    num_frames = np.array([12, 8, 2], np.int32)
    batch = {name: rng.normal(size=(3, 12, size)).astype(np.float32)
             for name, size in zip(("rgb", "audio"), SIZES)}
    # Inference: uniform frames floor(j * n / 4); the 2-frame video keeps its 2 frames.
    chosen = [[0, 3, 6, 9], [0, 2, 4, 6], [0, 1]]
    selected = {name: np.zeros((3, 4, value.shape[2]), np.float32)
                for name, value in batch.items()}
    for row, frames in enumerate(chosen):
        for name in batch:
            selected[name][row, :len(frames)] = batch[name][row, frames]
    expected = base({**selected, "num_frames": np.array([4, 4, 2], np.int32)})["predictions"]
    actual = student({**batch, "num_frames": num_frames}, training=False)["predictions"]
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-6)
    # Training: other frames (random), so other predictions for the 12-frame video.
    trained = [student({**batch, "num_frames": num_frames}, training=True)["predictions"].numpy()
               for _ in range(3)]
    assert any(not np.allclose(t[0], expected.numpy()[0]) for t in trained)

    with pytest.raises(ValueError, match="^FrameSkippingModel: student_base_model='MixtureModel' "
                                         "is a composite model"):
        frame_level_models.build("FrameSkippingModel", 5, student_base_model="MixtureModel",
                                 student_frames=4, frame_selection="uniform", **base_hparams)


# ---------------------------------------------------------------- teacher-student

def test_serial_training_freezes_the_teacher(workspace, batch):
    root, data_dir = workspace["root"], workspace["data"]
    distill = DistillConfig(mode="teacher_student", teacher_dirs=(workspace["teachers"][0],),
                            student_frames=5, losses=("rep", "pred", "ce"), rep_weight=0.5,
                            pred_distance="squared_error")
    config, factory = training_setup.prepare(_config(root, "serial", data_dir, "DbofModel", DBOF),
                                             distill)
    run = trainer.Trainer(config, training_model_factory=factory)
    wrapper = run.training_model
    teacher_model = wrapper.teacher_source.teachers[0].model
    assert not teacher_model.trainable_variables
    trained_ids = {id(v) for v in wrapper.trainable_variables}
    assert not any(id(v) in trained_ids for v in teacher_model.variables)
    # The student's embedding (8) is projected to the teacher's (1152) for L_rep.
    assert wrapper.projection.kernel.shape == (8, 1152)

    # The loss is CE + 0.5 * L_rep + L_pred, checked against numpy on one batch.
    features, labels = _features(batch), batch["labels"].numpy()
    outputs = wrapper(features, training=False)
    losses = objective.training_loss(wrapper, outputs, labels, None,
                                     get_label_loss("CrossEntropyLoss"), 0.0)
    p_s = outputs["predictions"].numpy()
    p_t = outputs[teacher_key(0, "predictions")].numpy()
    e_t = outputs[teacher_key(0, "embedding")].numpy()
    projected = outputs["embedding"].numpy() @ wrapper.projection.kernel.numpy() + \
        wrapper.projection.bias.numpy()
    ce = -np.mean(np.sum(labels * np.log(p_s + 1e-5) + (1 - labels) * np.log(1 - p_s + 1e-5), 1))
    rep = np.mean(np.sum((e_t - projected) ** 2, axis=1))
    pred = np.mean(np.sum((p_t - p_s) ** 2, axis=1))
    np.testing.assert_allclose(losses["total_loss"].numpy(), ce + 0.5 * rep + pred, rtol=2e-4)

    teacher_before = _values(teacher_model.variables)
    student_before = _values(run.model.trainable_variables)
    projection_before = _values(wrapper.projection.variables)
    result = run.run()
    assert result.step == 3
    assert not any(_changed(teacher_before, teacher_model.variables))
    assert any(_changed(student_before, run.model.trainable_variables))
    assert all(_changed(projection_before, wrapper.projection.variables))
    # The train dir holds the student alone as far as eval/inference are concerned.
    student = checkpoints.load_model(config.train_dir)
    assert student.name == "FrameSkippingModel"
    np.testing.assert_allclose(student(features)["predictions"].numpy(),
                               run.model(features)["predictions"].numpy(), atol=1e-6)
    with open(os.path.join(config.train_dir, "distillation.json")) as handle:
        assert json.load(handle)["teacher_dirs"] == [workspace["teachers"][0]]


def test_parallel_training_updates_teacher_and_student(workspace):
    root, data_dir = workspace["root"], workspace["data"]
    distill = DistillConfig(mode="teacher_student", training="parallel", student_frames=4,
                            losses=("rep", "pred"))
    config, factory = training_setup.prepare(_config(root, "parallel", data_dir), distill)
    run = trainer.Trainer(config, training_model_factory=factory)
    wrapper = run.training_model
    assert wrapper.label_loss_weight == 0.0  # no "ce" in the losses: the student's L_CE is off
    assert wrapper.projection is None  # the same model: embeddings of the same size
    teacher = wrapper.parallel_teacher
    teacher_before, student_before = (_values(teacher.trainable_variables),
                                      _values(run.model.trainable_variables))
    run.run()
    assert all(_changed(teacher_before, teacher.trainable_variables))
    assert all(_changed(student_before, run.model.trainable_variables))
    # The parallel teacher is saved beside the student and restored on resume.
    resumed = trainer.Trainer(dataclasses.replace(config, max_steps=4),
                              training_model_factory=factory)
    for restored, trained in zip(resumed.training_model.parallel_teacher.variables,
                                 teacher.variables):
        np.testing.assert_array_equal(restored.numpy(), trained.numpy())


# ---------------------------------------------------------------- multi-teacher and the cache

def test_cached_soft_labels_equal_on_the_fly_ones(workspace, batch):
    root = workspace["root"]
    cache_dir = os.path.join(root, "cache")
    teacher_cache.write_teacher_cache(workspace["teachers"],
                                      helpers.pattern(workspace["data"], "frame", "train"),
                                      cache_dir, batch_size=16)
    cache = teacher_cache.TeacherCache(cache_dir)
    assert cache.num_videos == 42 and cache.embedding_sizes == [1152, 8]
    with pytest.raises(FileExistsError, match="exists; pass --overwrite to replace it$"):
        teacher_cache.write_teacher_cache(workspace["teachers"], "unused", cache_dir)

    student = frame_level_models.build("FrameLevelLogisticModel", helpers.NUM_CLASSES,
                                       feature_names="rgb,audio", feature_sizes=(1024, 128))
    loaded = [teachers_lib.load_teacher(path) for path in workspace["teachers"]]
    settings = dict(temperature=2.0, lam=0.25, weights=(3.0, 1.0), form="softmax")
    live = MultiTeacherModel(student, LiveTeachers(loaded), **settings)
    cached = MultiTeacherModel(student, CachedTeachers(cache), **settings)
    assert cached.extra_batch_keys == ("id",)
    live_outputs = live(_features(batch), training=False)
    cached_outputs = cached(_features(batch, with_ids=True), training=False)
    np.testing.assert_allclose(cached_outputs[SOFT_LABELS].numpy(),
                               live_outputs[SOFT_LABELS].numpy(), atol=1e-6)

    # numpy: q = 0.75 softmax(z_1 / 2) + 0.25 softmax(z_2 / 2); z_2 = logit of the MoE output.
    z1 = loaded[0].model(_features(batch))["logits"].numpy()
    p2 = np.clip(loaded[1].model(_features(batch))["predictions"].numpy(), 1e-7, 1 - 1e-7)
    z2 = np.log(p2) - np.log1p(-p2)
    q = 0.75 * _softmax(z1 / 2) + 0.25 * _softmax(z2 / 2)
    np.testing.assert_allclose(live_outputs[SOFT_LABELS].numpy(), q, atol=1e-5)
    # loss = (1 - 0.25) CE + 0.25 * 2^2 * KL(q || softmax(z_s / 2)).
    labels = batch["labels"].numpy()
    z_s = live_outputs["logits"].numpy()
    p_s = 1 / (1 + np.exp(-z_s))
    ce = -np.mean(np.sum(labels * np.log(p_s) + (1 - labels) * np.log(1 - p_s), axis=1))
    kl = np.mean(np.sum(q * (np.log(q) - np.log(_softmax(z_s / 2))), axis=1))
    losses = objective.training_loss(cached, cached_outputs, labels, None,
                                     get_label_loss("CrossEntropyLoss"), 0.0)
    np.testing.assert_allclose(losses["total_loss"].numpy(), 0.75 * ce + kl, rtol=1e-4)

    with pytest.raises(KeyError, match="video id 'nope' is not in --teacher_cache="):
        cache.lookup_numpy([b"nope"])


# ---------------------------------------------------------------- graph distillation

def test_graph_edge_weights_stay_non_negative_and_learn(workspace, batch):
    root, data_dir = workspace["root"], workspace["data"]
    # Three teachers (the logistic one twice) give the representation graph three vertices
    # (pairs 0-1, 0-2, 1-2): with two it has one, whose softmax-normalised weight is always 1.
    teacher_dirs = tuple(workspace["teachers"]) + (workspace["teachers"][0],)
    distill = DistillConfig(mode="graph", teacher_dirs=teacher_dirs, graph_distance="kl",
                            temperature=2.0)
    config, factory = training_setup.prepare(_config(root, "graph", data_dir), distill)
    run = trainer.Trainer(config, training_model_factory=factory)
    wrapper = run.training_model
    graphs = wrapper.graphs()
    assert [g.name for g in graphs] == ["logits_graph", "representation_graph"]

    with tf.GradientTape() as tape:
        outputs = wrapper(_features(batch), training=True)
        loss = wrapper.auxiliary_loss(batch["labels"], outputs)
    gradients = tape.gradient(loss, [g.edge_logits for g in graphs])
    # Logits graph: only the teacher -> student column is used (serial: no teacher -> teacher).
    assert np.abs(gradients[0].numpy()[:, -1]).sum() > 0
    assert (np.abs(gradients[1].numpy()) > 0).all()

    run.run()
    for graph in graphs:
        assert np.abs(graph.edge_logits.numpy()).sum() > 0  # moved away from the uniform start
    into_student = graphs[0].teacher_weights().numpy()
    assert (into_student >= 0).all() and np.isclose(into_student.sum(), 1.0)
    representation = graphs[1].edge_weights().numpy()
    assert (representation >= 0).all() and np.isclose(representation.sum(), 1.0)

    uniform = GraphDistillationModel(
        run.model, wrapper.teacher_source, helpers.NUM_CLASSES, 1152, rep_weight=0.0,
        learn_edges=False)
    assert uniform.representation_graph is None
    assert not any(v is uniform.logits_graph.edge_logits for v in uniform.trainable_variables)


# ---------------------------------------------------------------- flags and train.py

@pytest.mark.parametrize("changes, message", [
    (dict(mode="teacher_student"), "--distill_mode=teacher_student needs teachers: --teacher_dirs "
                                   "(train dirs or exported ensembles) or --teacher_cache"),
    (dict(mode="teacher_student", teacher_dirs=("a", "b")),
     "--distill_mode=teacher_student takes one teacher; --teacher_dirs lists 2 (use "
     "multi_teacher or graph)"),
    (dict(mode="multi_teacher", teacher_dirs=("a", "b"), teacher_weights=(1.0,)),
     "--teacher_weights has 1 weights for 2 --teacher_dirs"),
    (dict(mode="teacher_student", teacher_dirs=("a",), losses=("rep", "kl")),
     "--distill_losses='rep,kl': give a non-empty comma-separated subset of rep,pred,ce"),
    (dict(mode="teacher_student", training="parallel", teacher_cache="c"),
     "--teacher_cache holds a frozen teacher's outputs; parallel training trains the teacher "
     "(drop --teacher_cache or use serial training)"),
    (dict(teacher_dirs=("a",)), "--teacher_dirs / --teacher_cache need --distill_mode"),
])
def test_bad_distillation_settings_name_the_flag(changes, message):
    with pytest.raises(ValueError) as error:
        training_setup.check(DistillConfig(**changes))
    assert str(error.value) == message


class _SquaredPredictions(DistillationModel):
    """A mode without teachers, defined here: loss + weight * mean_batch sum_c p_c^2."""

    def __init__(self, student, weight, **kwargs):
        super().__init__(student, **kwargs)
        self.weight = weight

    def distillation_outputs(self, features, student_outputs, training):
        return {}

    def distillation_loss(self, labels, outputs, label_weights):
        return self.weight * tf.reduce_mean(tf.reduce_sum(tf.square(outputs["predictions"]), 1))


def test_a_mode_registered_here_is_reachable_from_the_training_setup(workspace, batch,
                                                                      monkeypatch):
    monkeypatch.setattr(modes, "_MODES", dict(modes._MODES))  # registered for this test only
    calls = []

    def check(config):
        if config.teacher_dirs or config.teacher_cache:
            raise ValueError("--distill_mode=squared_predictions takes no teachers")

    def build(student, train_config, config, label_loss):
        calls.append((train_config.model, type(label_loss).__name__))
        return _SquaredPredictions(student, weight=config.temperature, name="squared")

    modes.register(modes.Mode("squared_predictions", build=build, check=check))
    with pytest.raises(ValueError, match="^--distill_mode=squared_predictions takes no teachers$"):
        training_setup.check(DistillConfig(mode="squared_predictions", teacher_dirs=("a",)))
    with pytest.raises(ValueError, match=r"^--distill_lambda=2.0: must be in \[0, 1\]$"):
        training_setup.check(DistillConfig(mode="squared_predictions", lam=2.0))  # shared checks
    with pytest.raises(ValueError, match=r"choose one of teacher_student, multi_teacher, graph, "
                                         r"squared_predictions \(or leave"):
        training_setup.check(DistillConfig(mode="squared"))

    root, data_dir = workspace["root"], workspace["data"]
    distill = DistillConfig(mode="squared_predictions", temperature=4.0, student_frames=6)
    config, factory = training_setup.prepare(_config(root, "registered", data_dir, max_steps=2),
                                             distill)
    run = trainer.Trainer(config, training_model_factory=factory)
    wrapper = run.training_model
    assert isinstance(wrapper, _SquaredPredictions) and wrapper.student is run.model
    assert calls == [("FrameLevelLogisticModel", "CrossEntropyLoss")]
    assert run.model.name == "FrameSkippingModel"  # --student_frames, shared by every mode
    outputs = wrapper(_features(batch), training=False)
    p = outputs["predictions"].numpy()
    losses = objective.training_loss(wrapper, outputs, batch["labels"], None,
                                     get_label_loss("CrossEntropyLoss"), 0.0)
    np.testing.assert_allclose(losses["auxiliary_loss"].numpy(),
                               4.0 * np.mean(np.sum(p ** 2, axis=1)), rtol=1e-5)
    assert run.run().step == 2
    with open(os.path.join(config.train_dir, "distillation.json")) as handle:
        assert json.load(handle)["mode"] == "squared_predictions"


def test_distillation_flags_become_the_config():
    flag_values = flags.FlagValues()
    distill_flags.define_flags(flag_values)
    flag_values(["train.py", "--distill_mode=multi_teacher", "--teacher_dirs=a,b",
                 "--teacher_weights=0.6,0.4", "--student_frames=10", "--frame_selection=middle",
                 "--distill_form=sigmoid", "--distill_lambda=0.3"])
    config = distill_flags.config_from_flags(flag_values)
    assert config == DistillConfig(mode="multi_teacher", teacher_dirs=("a", "b"),
                                   teacher_weights=(0.6, 0.4), student_frames=10,
                                   frame_selection="middle", form="sigmoid", lam=0.3)
    flag_values.unparse_flags()
    flag_values(["train.py", "--teacher_weights=0.6,x"])
    with pytest.raises(ValueError, match=r"^--teacher_weights: 'x' is not a number$"):
        distill_flags.config_from_flags(flag_values)


def test_train_py_distills_end_to_end(workspace):
    root = workspace["root"]
    cache_dir = os.path.join(root, "cache")  # written by the cache test, else written here
    if not os.path.exists(cache_dir):
        teacher_cache.write_teacher_cache(workspace["teachers"],
                                          helpers.pattern(workspace["data"], "frame", "train"),
                                          cache_dir, batch_size=16)
    train_dir = os.path.join(root, "train_py_graph")
    process = helpers.start(helpers.python_command(
        "train.py", f"--train_dir={train_dir}",
        f"--train_data_pattern={helpers.pattern(workspace['data'], 'frame', 'train')}",
        "--frame_features", "--feature_names=rgb,audio", "--feature_sizes=1024,128",
        f"--num_classes={helpers.NUM_CLASSES}", f"--max_frames={helpers.MAX_FRAMES}",
        "--model=FrameLevelLogisticModel", "--batch_size=4", "--max_steps=2",
        "--distribution_strategy=one_device", "--distill_mode=graph",
        f"--teacher_cache={cache_dir}", "--student_frames=6", "--frame_selection=uniform",
        "--distill_temperature=2", "--distill_lambda=0.6", "--graph_distance=emd"))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "train.py: stopped at step 2 (max_steps)" in output
    with open(os.path.join(train_dir, "model_flags.json")) as handle:
        hparams = json.load(handle)["hparams"]
    assert (hparams["student_base_model"], hparams["student_frames"],
            hparams["frame_selection"]) == ("FrameLevelLogisticModel", 6, "uniform")
    with open(os.path.join(train_dir, "distillation.json")) as handle:
        record = json.load(handle)
    assert (record["mode"], record["teacher_cache"], record["lam"]) == ("graph", cache_dir, 0.6)
    saved = dict(tf.train.list_variables(tf.train.latest_checkpoint(train_dir)))
    assert any(name.startswith("training_model/logits_graph/edge_logits") for name in saved)
