"""Evaluation loop (eval.py): checkpoints of a train dir -> GAP, MAP, Hit@1, PERR and label loss.

Each evaluated checkpoint gets TensorBoard summaries in `train_dir/eval/` and a JSON file
`train_dir/eval/metrics_step_<step>.json` (written atomically). Without --run_once the loop waits
for the trainer's next checkpoint (tf.train.checkpoints_iterator).

Segment mode (--segment_labels): one element per rated segment; the label loss is weighted by
`label_weights` and predictions of the unrated classes are zeroed, so the metrics only rank the
rated classes (as the starter's eval.py).
"""
import dataclasses
import os
import time

from absl import logging

import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf

from frame_level_models import hparams
from frame_level_models import registry
from yt8m.inference import predictors
from yt8m.metrics import EvaluationMetrics
from yt8m.training import checkpoints
from yt8m.core import files
from yt8m.training import inputs
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import options
from yt8m.core.config import RecordedModelFlags
from yt8m.training.model_builder import build_model, label_loss_for
from yt8m.training.objective import model_predictions
from yt8m.core import errors

EVAL_SUBDIR = "eval"


def eval_dir(train_dir):
    return os.path.join(train_dir, EVAL_SUBDIR)


def metrics_path(train_dir, step):
    return os.path.join(eval_dir(train_dir), f"metrics_step_{step}.json")


def make_eval_step(model, data_config, label_loss, jit_compile=False):
    """tf.function: batch -> (predictions with unrated classes zeroed, label loss);
    jit_compile: the forward pass compiled with XLA (--jit_compile)."""
    forward = predictors.inference_forward(model, jit_compile)

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        outputs = forward(inputs.model_inputs(batch, data_config))
        predictions, logits = model_predictions(outputs)
        label_weights = batch.get("label_weights")
        loss = label_loss.calculate_loss(predictions, batch["labels"],
                                         label_weights=label_weights, logits=logits)
        if label_weights is not None:
            predictions = predictions * label_weights
        return predictions, loss

    return eval_step


def evaluate_batches(eval_step, batches, num_classes, top_k,
                     data_description="the evaluation data"):
    """Streams every batch through the metrics; returns the results dict.

    Data without a single label (test files) is refused: its metrics would be a meaningless 0.
    """
    metrics = EvaluationMetrics(num_classes, top_k)
    started = time.time()
    labelled = 0  # examples with a label (segments: with a rated class)
    for batch in batches:
        predictions, loss = eval_step(batch)
        labels = batch["labels"].numpy()
        metrics.accumulate(predictions.numpy(), labels, float(loss))
        marks = batch["label_weights"].numpy() if "label_weights" in batch else labels
        labelled += int(np.count_nonzero(marks.any(axis=1)))
        logging.log_every_n(logging.INFO, "evaluated %d examples (%.1f examples/s)", 20,
                            metrics.num_examples,
                            metrics.num_examples / max(time.time() - started, 1e-9))
    if metrics.num_examples == 0:
        raise errors.InvalidInputError(f"{data_description} holds no example")
    if labelled == 0:
        raise errors.InvalidInputError(
            f"{data_description} holds {metrics.num_examples} examples but not one label "
            "(unlabelled test files?): its metrics would all be 0; evaluate on labelled "
            "(train/validate) files")
    summary = metrics.get()
    return {name: float(summary[name]) for name in ("gap", "map", "hit_at_one", "perr", "loss")} \
        | {"num_examples": int(summary["num_examples"])}


@dataclasses.dataclass
class _Evaluator:
    """Everything that stays the same from one checkpoint to the next."""
    config: object
    model_flags: dict
    data_config: object
    files: list

    def __post_init__(self):
        self.model = build_model(self.model_flags)
        self.label_loss = label_loss_for(self.model_flags["label_loss"], self.model_flags["model"])
        self.eval_step = make_eval_step(self.model, self.data_config, self.label_loss,
                                        self.config.jit_compile)
        self.writer = None  # created with the first results: a failed run leaves no eval dir

    def restore(self, checkpoint_path):
        checkpoints.restore_model_weights(
            self.model, checkpoint_path,
            f"model {self.model_flags['model']!r} described by "
            f"{model_flags_lib.model_flags_path(self.config.train_dir)}")

    def evaluate(self, checkpoint_path, restored=False):
        config = self.config
        if not restored:
            self.restore(checkpoint_path)
        step = checkpoints.checkpoint_step(checkpoint_path)
        dataset = inputs.evaluation_dataset(self.files, self.data_config, config.batch_size)
        results = evaluate_batches(self.eval_step, dataset, self.data_config.num_classes,
                                   config.top_k,
                                   f"--eval_data_pattern={config.eval_data_pattern!r}")
        results.update(step=step, checkpoint=checkpoint_path,
                       eval_data_pattern=config.eval_data_pattern,
                       segment_labels=config.segment_labels, top_k=config.top_k)
        with files.refused_write_as_user_error(eval_dir(config.train_dir)):
            if self.writer is None:
                self.writer = tf.summary.create_file_writer(eval_dir(config.train_dir))
            with self.writer.as_default():
                for name in ("gap", "map", "hit_at_one", "perr", "loss"):
                    tf.summary.scalar(name, results[name], step=step)
            self.writer.flush()
        files.write_json_atomically(metrics_path(config.train_dir, step), results)
        logging.info("step %d | GAP %.4f | MAP %.4f | Hit@1 %.4f | PERR %.4f | loss %.4f | "
                     "%d examples", step, results["gap"], results["map"], results["hit_at_one"],
                     results["perr"], results["loss"], results["num_examples"])
        return results


def _flag_text(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def given_model_flags(flag_values):
    """(RecordedModelFlags, {hparam: value}) of train.py's model flags given on the command line
    of eval.py or inference.py (which define them: RecordedModelFlags, hparams.define_flags)."""
    given_hparams = {row.name: flag_values[row.name].value for row in hparams.all_hparams()
                     if row.name in flag_values and flag_values[row.name].present}
    return options.from_flags(RecordedModelFlags, flag_values), given_hparams


def model_flag_warnings(model_flags, recorded_flags, given_hparams):
    """Warnings for train.py's model flags given to eval.py or inference.py.

    The references' eval/inference command lines repeat the training command's model and input
    flags (their tools ignored them or needed them again); here the model and its inputs are
    rebuilt from model_flags.json, so such a flag changes nothing: it is accepted, and a warning
    says so where it differs from the record.

    Args:
      model_flags: the train dir's model_flags.json.
      recorded_flags: RecordedModelFlags of the command line (None: not given).
      given_hparams: {hparam name: value given on the command line}.
    """
    names, sizes = model_flags_lib.features(model_flags)
    record = {"model": model_flags["model"], "frame_features": model_flags["frame_features"],
              "feature_names": names, "feature_sizes": sizes,
              "num_classes": model_flags["num_classes"], "max_frames": model_flags["max_frames"],
              "label_loss": model_flags.get("label_loss")}
    warnings = []
    for name, value in dataclasses.asdict(recorded_flags).items():
        recorded = record[name]
        if name == "model":  # a reference spelling of the same model agrees
            value = None if value is None else registry.canonical_name(value)
        if value is None or value == recorded:
            continue
        warnings.append(f"--{name}={_flag_text(value)!r} is ignored: the model is rebuilt as "
                        f"trained, with {name}={_flag_text(recorded)!r} (model_flags.json)")
    return warnings + hparam_flag_warnings(model_flags, given_hparams)


def hparam_flag_warnings(model_flags, given):
    """Warnings for model hyper-parameter flags given to eval.py or inference.py.

    The starter's eval.py needs the model flags again (its model_flags.json does not record
    them); here the model is rebuilt from the hparams model_flags.json records, so a given flag
    changes nothing: it is accepted, and a warning says so where it differs from the recorded
    value or the model has no such hyper-parameter.

    Args:
      model_flags: the train dir's model_flags.json.
      given: {hparam name: value given on the command line}.
    """
    model = model_flags["model"]
    used = set(hparams.model_hparam_names(model))
    recorded = vars(hparams.resolve(model, model_flags.get("hparams", {})))
    warnings = []
    for name, value in sorted(given.items()):
        if name not in used:
            warnings.append(f"--{name} is ignored: model {model!r} has no such hyper-parameter")
        elif name in recorded and recorded[name] != value:
            warnings.append(f"--{name}={value!r} is ignored: the model is rebuilt as trained, "
                            f"with {name}={recorded[name]!r} (model_flags.json)")
    return warnings


def _checkpoints_to_evaluate(config):
    if config.checkpoint:
        yield config.checkpoint
    else:
        logging.info("Waiting for checkpoints in %s", config.train_dir)
        yield from tf.train.checkpoints_iterator(config.train_dir,
                                                 timeout=config.eval_timeout_secs)


def run_evaluation(config):
    """Evaluates checkpoints as configured (EvalConfig); returns the list of results dicts."""
    model_flags = model_flags_lib.read_model_flags(config.train_dir)
    data_config = inputs.data_config_from_model_flags(
        model_flags, segment_labels=config.segment_labels, num_readers=config.num_readers,
        frame_buckets=config.frame_buckets, skip_corrupted=config.skip_corrupted)
    eval_files = inputs.require_files(config.eval_data_pattern, "--eval_data_pattern")
    # Fail before building the model when there is nothing to evaluate.
    if config.checkpoint:
        checkpoints.require_checkpoint(config.train_dir, config.checkpoint)
    elif config.run_once and not checkpoints.newest_first(config.train_dir):
        checkpoints.latest_checkpoint(config.train_dir)  # raises NoCheckpointError
    evaluator = _Evaluator(config, model_flags, data_config, eval_files)
    if config.run_once and not config.checkpoint:
        # The newest checkpoint, or the newest intact one when it cannot be read.
        candidates = checkpoints.newest_first(config.train_dir) or [
            checkpoints.latest_checkpoint(config.train_dir)]  # (raises NoCheckpointError)
        restored = checkpoints.restore_newest_intact(candidates, evaluator.restore)
        return [evaluator.evaluate(restored, restored=True)]
    all_results = []
    for checkpoint_path in _checkpoints_to_evaluate(config):
        try:
            all_results.append(evaluator.evaluate(checkpoint_path))
        except (tf.errors.NotFoundError, checkpoints.NoCheckpointError,
                checkpoints.CorruptCheckpointError) as error:
            if config.checkpoint:
                raise
            # The trainer's keep-N rotation deleted it before we got to it (or it is corrupted):
            # wait for the next.
            logging.warning("Skipping %s: %s", checkpoint_path, error)
    return all_results
