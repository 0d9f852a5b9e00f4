"""Tiny train -> eval -> inference on synthetic shards, checked against numpy arithmetic."""
import dataclasses
import json
import os
import re

import numpy as np
import pytest

import yt8m  # noqa: F401

from yt8m import evaluation
from yt8m.data import readers
from yt8m.inference import video_inference
from yt8m.training import checkpoints
from yt8m.training import inputs
from yt8m.training import trainer
from yt8m.core.config import EvalConfig, InferenceConfig

import training_helpers as helpers


@pytest.fixture(scope="module")
def frame_run(frame_logistic_run, tmp_path_factory):
    """A copy of the shared FrameLevelLogisticModel run (10 steps; checkpoints at steps 5 and
    10): evaluating it writes its eval/ directory."""
    return helpers.copy_tree(frame_logistic_run, tmp_path_factory.mktemp("frame_run") / "run")


def _predict_all(train_dir, pattern, segment_labels=False, checkpoint=None):
    """(ids, logits, labels, label weights, predictions) of every example, computed outside the
    eval loop."""
    model = checkpoints.load_model(train_dir, checkpoint)
    data = dataclasses.replace(helpers.FRAME_DATA, segment_labels=segment_labels)
    batches = list(inputs.evaluation_dataset(readers.list_files(pattern), data, 1000))
    assert len(batches) == 1
    batch = batches[0]
    outputs = model(inputs.model_inputs(batch, data), training=False)
    weights = batch["label_weights"].numpy() if segment_labels else None
    return (batch["id"].numpy(), outputs["logits"].numpy().astype(np.float64),
            batch["labels"].numpy().astype(np.float64), weights, outputs["predictions"].numpy())


def _numpy_metrics(scores, labels):
    """GAP, MAP and Hit@1 when top_k (20) >= the 6 classes, so every (video, class) pair counts."""
    order = np.argsort(-scores.ravel(), kind="stable")
    relevant = labels.ravel()[order]
    precision = np.cumsum(relevant) / np.arange(1, relevant.size + 1)
    gap = float(np.sum(precision * relevant) / labels.sum())
    class_aps = []
    for c in range(labels.shape[1]):
        if labels[:, c].sum() == 0:
            continue
        hits = labels[np.argsort(-scores[:, c], kind="stable"), c]
        class_precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
        class_aps.append(np.sum(class_precision * hits) / hits.sum())
    hit_at_one = float(np.mean(labels[np.arange(len(labels)), np.argmax(scores, axis=1)]))
    return gap, float(np.mean(class_aps)), hit_at_one


def _sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


def _starter_cross_entropy(logits, labels, weights=1.0):
    """The starter's CrossEntropyLoss: on the probabilities, epsilon 1e-5."""
    p = _sigmoid(logits.astype(np.float64))
    per_class = -(labels * np.log(p + 1e-5) + (1 - labels) * np.log(1 - p + 1e-5))
    return np.mean(np.sum(weights * per_class, axis=1))


def test_eval_run_once_writes_the_metrics_of_the_newest_checkpoint(small_dataset, frame_run):
    pattern = helpers.pattern(small_dataset, "frame", "validate")
    # Batches of 4 over 9 videos: the metrics must stream (4 + 4 + 1).
    results = evaluation.run_evaluation(EvalConfig(
        train_dir=frame_run, eval_data_pattern=pattern, batch_size=4, num_readers=2,
        run_once=True))
    assert len(results) == 1
    result = results[0]
    _, logits, labels, _, _ = _predict_all(frame_run, pattern)
    gap, mean_ap, hit_at_one = _numpy_metrics(_sigmoid(logits), labels)
    loss = _starter_cross_entropy(logits, labels)
    assert (result["step"], result["num_examples"]) == (10, 9)
    assert result["checkpoint"] == os.path.join(frame_run, "ckpt-10")
    assert result["gap"] == pytest.approx(gap, abs=1e-6)
    assert result["map"] == pytest.approx(mean_ap, abs=1e-6)
    assert result["hit_at_one"] == pytest.approx(hit_at_one, abs=1e-9)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    with open(os.path.join(frame_run, "eval", "metrics_step_10.json")) as handle:
        assert json.load(handle) == result
    assert sorted(name for name in os.listdir(os.path.join(frame_run, "eval"))
                  if not name.startswith("events.out.tfevents")) == ["metrics_step_10.json"]


def test_eval_of_a_chosen_checkpoint_and_waiting_mode(small_dataset, frame_run):
    pattern = helpers.pattern(small_dataset, "frame", "validate")
    older = evaluation.run_evaluation(EvalConfig(
        train_dir=frame_run, eval_data_pattern=pattern, num_readers=2,
        checkpoint=os.path.join(frame_run, "ckpt-5")))
    assert [result["step"] for result in older] == [5]
    _, logits, labels, _, _ = _predict_all(frame_run, pattern, checkpoint=older[0]["checkpoint"])
    assert older[0]["gap"] == pytest.approx(_numpy_metrics(_sigmoid(logits), labels)[0],
                                            abs=1e-6)
    # Without run_once: evaluates the newest checkpoint, then waits; the timeout ends the wait.
    waited = evaluation.run_evaluation(EvalConfig(
        train_dir=frame_run, eval_data_pattern=pattern, num_readers=2, eval_timeout_secs=1))
    assert [result["step"] for result in waited] == [10]


CSV_ROW = re.compile(r"^([^,\s]+),(\d+ \S+(?: \d+ \S+)*)$")


def test_inference_writes_the_kaggle_csv(small_dataset, frame_run, tmp_path):
    pattern = helpers.pattern(small_dataset, "frame", "test")
    output_file = str(tmp_path / "out" / "submission.csv")
    written = video_inference.run_inference(InferenceConfig(
        train_dir=frame_run, input_data_pattern=pattern, output_file=output_file, top_k=4,
        batch_size=4, num_readers=2))
    with open(output_file) as handle:
        text = handle.read()
    assert text.endswith("\n") and "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs"
    assert written == len(lines) - 1 == 9
    assert os.listdir(tmp_path / "out") == ["submission.csv"]  # no temp file left behind
    ids, _, _, _, probabilities = _predict_all(frame_run, pattern)
    expected = {video_id.decode(): scores for video_id, scores in zip(ids, probabilities)}
    for line in lines[1:]:
        match = CSV_ROW.match(line)
        assert match, line
        video_id, pairs = match.groups()
        values = pairs.split(" ")
        assert len(values) == 8
        scores = [float(value) for value in values[1::2]]
        assert scores == sorted(scores, reverse=True)
        assert all(value == "%g" % float(value) for value in values[1::2])  # 6 digits, %g
        reference = expected[video_id]
        classes = [int(value) for value in values[::2]]
        # The model scored in batches of 4 here and of 9 there: equal up to float rounding.
        assert classes == list(np.argsort(-reference, kind="stable")[:4])
        np.testing.assert_allclose(scores, reference[classes], rtol=1e-5)
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(expected)


def test_segment_mode_trains_and_evaluates_on_rated_classes(small_dataset, tmp_path):
    pattern = helpers.pattern(small_dataset, "segment", "validate")
    train_dir = str(tmp_path / "segments")
    data = dataclasses.replace(helpers.FRAME_DATA, segment_labels=True)
    result = trainer.train(helpers.train_config(
        train_dir, small_dataset, frame_level=True, data=data, train_data_pattern=pattern,
        batch_size=2, max_steps=3))
    assert (result.step, result.stop_reason) == (3, "max_steps")
    (evaluated,) = evaluation.run_evaluation(EvalConfig(
        train_dir=train_dir, eval_data_pattern=pattern, segment_labels=True, batch_size=3,
        num_readers=2, run_once=True))
    _, logits, labels, weights, _ = _predict_all(train_dir, pattern, segment_labels=True)
    assert weights.sum() > 0 and (weights.sum(axis=1) > 0).all()
    # Unrated classes: no loss, and a zero score so they never rank above a rated class.
    gap, mean_ap, hit_at_one = _numpy_metrics(_sigmoid(logits) * weights, labels)
    loss = _starter_cross_entropy(logits, labels, weights)
    assert evaluated["num_examples"] == len(labels)
    assert evaluated["gap"] == pytest.approx(gap, abs=1e-6)
    assert evaluated["map"] == pytest.approx(mean_ap, abs=1e-6)
    assert evaluated["hit_at_one"] == pytest.approx(hit_at_one, abs=1e-9)
    assert evaluated["loss"] == pytest.approx(loss, rel=1e-5)
    assert evaluated["segment_labels"] is True


def _record(**changes):
    record = {"model": "MixNeXtVLADModel", "feature_names": "rgb,audio",
              "feature_sizes": "1024,128", "frame_features": True, "num_classes": 3862,
              "max_frames": 300, "label_loss": "CrossEntropyLoss", "hparams": {}}
    record.update(changes)
    return record


def test_model_flag_warnings_compare_the_given_flags_with_the_record():
    from yt8m.core.config import RecordedModelFlags
    agreeing = RecordedModelFlags(model="MixNeXtVladModel", frame_features=True,
                                  feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                                  num_classes=3862, max_frames=300,
                                  label_loss="CrossEntropyLoss")
    # linrongc's spelling of the recorded model agrees; nothing given: nothing to say.
    assert evaluation.model_flag_warnings(_record(), agreeing, {}) == []
    assert evaluation.model_flag_warnings(_record(), RecordedModelFlags(), {}) == []
    differing = RecordedModelFlags(model="NeXtVLADModel", feature_sizes=(1024,),
                                   label_loss="HingeLoss")
    assert evaluation.model_flag_warnings(_record(), differing, {}) == [
        "--model='NeXtVLADModel' is ignored: the model is rebuilt as trained, with "
        "model='MixNeXtVLADModel' (model_flags.json)",
        "--feature_sizes='1024' is ignored: the model is rebuilt as trained, with "
        "feature_sizes='1024,128' (model_flags.json)",
        "--label_loss='HingeLoss' is ignored: the model is rebuilt as trained, with "
        "label_loss='CrossEntropyLoss' (model_flags.json)"]
