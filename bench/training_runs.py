"""What the training benchmarks share: a cached synthetic data set, one train-and-evaluate run with
the project's trainer and evaluation (results cached by their settings and the code's digest,
result_cache.py), inference throughput.

Imported by the benchmarks (run as `python bench/<name>.py`, so this directory is on sys.path).
"""
import dataclasses
import hashlib
import json
import os
import shutil
import time

from absl import logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

from yt8m import evaluation, synthetic
from yt8m.inference import predictors
from yt8m.core import files
from yt8m.training import checkpoints, inputs, trainer
from yt8m.core.config import DataConfig, EvalConfig, TrainConfig

import result_cache

FRAME_FEATURES = (("rgb", "audio"), (1024, 128))
VIDEO_FEATURES = (("mean_rgb", "mean_audio"), (1024, 128))


def synthetic_data(data_dir, num_workers=2, **options):
    """`data_dir`, holding the yt8m.synthetic set of `options` (fields of yt8m.synthetic.Config):
    reused when it was written with them by the current generator code (result_cache's stamp),
    else written anew."""
    config = dataclasses.asdict(synthetic.Config(**options))
    if result_cache.directory_is_fresh(data_dir, config, result_cache.DATA_SOURCES):
        logging.info("Reusing the data set in %s", data_dir)
        return data_dir
    shutil.rmtree(data_dir, ignore_errors=True)  # a benchmark's own output: start clean
    logging.info("Generating %s", options)
    synthetic.generate(data_dir, num_workers=num_workers, **options)  # logs its videos/s
    result_cache.stamp_directory(data_dir, config, result_cache.DATA_SOURCES)
    return data_dir


def settings_dir(output_dir, prefix, settings):
    """output_dir/<prefix>_<digest of settings>: one directory per JSON-able set of settings."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(output_dir, f"{prefix}_{digest}")


def data_config(frame_level, num_classes, max_frames=300, frame_buckets=()):
    names, sizes = FRAME_FEATURES if frame_level else VIDEO_FEATURES
    return DataConfig(feature_names=names, feature_sizes=sizes, frame_features=frame_level,
                      num_classes=num_classes, max_frames=max_frames, num_readers=2,
                      frame_buckets=tuple(frame_buckets))


def split_pattern(data_dir, frame_level, split):
    return os.path.join(data_dir, "frame" if frame_level else "video", f"{split}*")


def trainable_parameters(model):
    return int(sum(variable.shape.num_elements() for variable in model.trainable_variables))


def evaluate(train_dir, data_dir, frame_level=True, batch_size=64):
    results = evaluation.run_evaluation(EvalConfig(
        train_dir=train_dir, eval_data_pattern=split_pattern(data_dir, frame_level, "validate"),
        run_once=True, batch_size=batch_size, num_readers=2))[0]
    return {"gap": results["gap"], "map": results["map"], "hit_at_one": results["hit_at_one"],
            "num_eval_examples": results["num_examples"]}


def inference_examples_per_second(train_dir, data_dir, frame_level, batch_size=64):
    """Examples/s of a checkpoint predicting the validate split through the inference input
    pipeline (second pass; the first one traces)."""
    model = checkpoints.load_model(train_dir)
    model_flags = files.read_json(os.path.join(train_dir, "model_flags.json"))
    config = inputs.data_config_from_model_flags(model_flags, segment_labels=False,
                                                 num_readers=2)
    predict = predictors.model_predictor(model, config)
    dataset = inputs.inference_dataset(
        inputs.require_files(split_pattern(data_dir, frame_level, "validate"), "validate"),
        config, batch_size)
    for _ in range(2):
        started, count = time.perf_counter(), 0
        for batch in dataset:
            predict(batch).numpy()
            count += int(batch["id"].shape[0])
        seconds = time.perf_counter() - started
    return count / seconds


def train_and_evaluate(train_dir, data_dir, *, model, hparams, frame_level, num_classes,
                       max_frames, batch_size, learning_rate, epochs, bn_momentum, seed,
                       settings, reuse=True, measure_inference=False,
                       mixed_precision="float32"):
    """Trains `model` with the project's trainer, evaluates it on the validate split.

    bn_momentum: the models' `bn_momentum` hparam (the references' 0.999 needs thousands of steps
    to settle; short benchmark runs use less).
    mixed_precision: train.py's --mixed_precision (float32, mixed_bfloat16, mixed_float16).
    Returns the result dict (parameters, training examples/s, GAP, MAP, ...). With `reuse`, a
    result already in train_dir for the same `settings` (any JSON-able description of the run)
    and the same library code (yt8m/, frame_level_models/) is returned without training again.
    """
    result_path = os.path.join(train_dir, "bench_result.json")
    previous = result_cache.load(result_path, settings) if reuse else None
    if previous is not None:
        logging.info("Reusing %s", result_path)
        return previous
    config = TrainConfig(
        train_dir=train_dir, train_data_pattern=split_pattern(data_dir, frame_level, "train"),
        data=data_config(frame_level, num_classes, max_frames), model=model,
        model_hparams=dict(hparams, bn_momentum=bn_momentum), start_new_model=True,
        batch_size=batch_size,
        base_learning_rate=learning_rate, num_epochs=epochs, export_model_steps=10 ** 9,
        save_checkpoint_secs=10 ** 9, keep_checkpoint_max=1, log_every_steps=20,
        shuffle_seed=seed, mixed_precision=mixed_precision)
    started = time.time()
    run_trainer = trainer.Trainer(config)
    outcome = run_trainer.run()
    result = {"model": model, "parameters": trainable_parameters(run_trainer.model),
              "train_examples_per_second": outcome.examples_per_second, "steps": outcome.step,
              "train_seconds": time.time() - started,
              **evaluate(train_dir, data_dir, frame_level)}
    if measure_inference:
        result["inference_examples_per_second"] = inference_examples_per_second(
            train_dir, data_dir, frame_level)
    return result_cache.store(result_path, result, settings)
