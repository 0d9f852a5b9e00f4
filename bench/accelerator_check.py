"""Accelerator check: examples/s of the project's own training and inference steps on GPUs.

Run it on a machine with NVIDIA GPUs and TensorFlow (the project installed, `make venv`):

    .venv/bin/python bench/accelerator_check.py                     # everything below, ~10 min
    .venv/bin/python bench/accelerator_check.py --jit_compile       # the same with XLA steps
    .venv/bin/python bench/accelerator_check.py --parts=single      # one GPU only

On a machine without a GPU it says so and exits 0 (nothing to measure). Parts (--parts):

single     NeXtVLADModel in the paper configuration (batch 80 x 300 frames, 3862 classes) on one
           GPU: training steps (the trainer's step: forward, backward, loss scaling for
           mixed_float16, clipped Adam update) and inference calls, under float32,
           mixed_float16 and (GPUs of compute capability 8.0 and up) mixed_bfloat16.
mirrored   the same training step under MirroredStrategy over every visible GPU (--batch_size
           per GPU), float32 and the best mixed policy: examples/s and the scaling over one GPU.
mod_tree   a 4x3 MOD tree of NeXtVLAD leaves (MODNeXtVLADModel --mod_tree=4x3) with its four
           sub-trees placed on four GPUs (model parallelism): the physical GPUs when there are
           four or more, else each GPU split into logical GPUs of --logical_gpu_memory_mb (in a
           child process, as the split must precede TensorFlow's start).

Each measurement builds the real trainer (yt8m.training.trainer.Trainer) on a few synthetic
videos, then times --steps calls of its step on one batch after --warmup calls (the first
compiles). Results print as a table and go to --output_dir/accelerator_check.json.
Numbers on this project's CPU machines are in README.md; this script exists because no GPU was
available to the project (docs/training.md, "Mixed precision").
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

PARTS = ("single", "mirrored", "mod_tree")
flags.DEFINE_list("parts", list(PARTS), f"Parts to run: {', '.join(PARTS)}.")
flags.DEFINE_integer("batch_size", 80, "Videos per batch (per GPU under MirroredStrategy).")
flags.DEFINE_integer("frames", 300, "Frames per video.")
flags.DEFINE_integer("num_classes", 3862, "Vocabulary size.")
flags.DEFINE_integer("steps", 20, "Timed steps per measurement.")
flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, XLA compilation, autotuning).")
flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA (train.py --jit_compile).")
flags.DEFINE_integer("logical_gpu_memory_mb", 16000,
                     "mod_tree with fewer than 4 GPUs: memory of each logical GPU.")
flags.DEFINE_string("output_dir", os.path.join(os.path.dirname(__file__), "output"),
                    "Where accelerator_check.json goes.")
flags.DEFINE_bool("mod_tree_child", False, "Internal: the mod_tree part's child process.")
FLAGS = flags.FLAGS

MOD_GPUS = 4


def _data(directory, batch_size, frames, num_classes):
    """A few synthetic frame-level videos of exactly `frames` frames (yt8m.synthetic)."""
    from yt8m import synthetic
    synthetic.generate(directory, num_videos=2 * batch_size, num_classes=num_classes,
                       min_frames=frames, max_frames=frames, validate_fraction=0.0,
                       test_fraction=0.0, num_segment_videos=0, num_shards=1)
    return os.path.join(directory, "frame", "train*")


def _config(train_dir, pattern, model, precision, strategy, **hparams):
    from yt8m.core.config import DataConfig, TrainConfig
    return TrainConfig(
        train_dir=train_dir, train_data_pattern=pattern, model=model, model_hparams=hparams,
        data=DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                        frame_features=True, num_classes=FLAGS.num_classes,
                        max_frames=FLAGS.frames, num_readers=1),
        batch_size=FLAGS.batch_size, num_epochs=1000, shuffle_seed=0,
        checkpoint_input_pipeline=False, mixed_precision=precision,
        jit_compile=FLAGS.jit_compile, distribution_strategy=strategy, start_new_model=True)


def _examples_per_second(function, examples):
    for _ in range(FLAGS.warmup):
        function()
    started = time.perf_counter()
    for _ in range(FLAGS.steps):
        function()
    return FLAGS.steps * examples / (time.perf_counter() - started)


def measure(workdir, pattern, name, model, precision, strategy, inference=True, **hparams):
    """{training (and inference) examples/s} of the trainer's step for one configuration."""
    from yt8m.inference import predictors
    from yt8m.training import trainer as trainer_lib
    run = trainer_lib.Trainer(_config(os.path.join(workdir, name), pattern, model, precision,
                                      strategy, **hparams))
    batch = next(run.iterator)

    def train():
        losses, _, _ = run.train_step(batch)  # the trainer's own step on one batch
        float(losses["total_loss"])

    result = {"name": name, "precision": precision, "replicas": run.num_replicas,
              "train_examples_per_second": _examples_per_second(train, run.global_batch_size)}
    if inference:
        predict = predictors.model_predictor(run.model, run.config.data, FLAGS.jit_compile)
        result["inference_examples_per_second"] = _examples_per_second(
            lambda: predict(batch).numpy(), int(batch["labels"].shape[0]))
    print(json.dumps(result), flush=True)
    return result


def mixed_policies():
    """mixed_float16 everywhere; mixed_bfloat16 on GPUs of compute capability 8.0 and up."""
    policies = ["mixed_float16"]
    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    if details.get("compute_capability", (0, 0)) >= (8, 0):
        policies.append("mixed_bfloat16")
    return policies


def run_single(workdir, pattern):
    return [measure(workdir, pattern, f"single {precision}", "NeXtVLADModel", precision,
                    "one_device") for precision in ["float32"] + mixed_policies()]


def run_mirrored(workdir, pattern):
    mixed = mixed_policies()[-1]
    return [measure(workdir, pattern, f"mirrored {precision}", "NeXtVLADModel", precision,
                    "mirrored", inference=False) for precision in ("float32", mixed)]


def run_mod_tree(workdir, pattern):
    """In this process when there are MOD_GPUS GPUs, else in a child that splits the GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < MOD_GPUS and not FLAGS.mod_tree_child:
        output = os.path.join(workdir, "mod_tree.json")
        command = [sys.executable, os.path.abspath(__file__), "--mod_tree_child",
                   f"--output_dir={workdir}"] + [
            f"--{name}={FLAGS[name].value}" for name in (
                "batch_size", "frames", "num_classes", "steps", "warmup", "jit_compile",
                "logical_gpu_memory_mb")]
        subprocess.run(command, check=True)
        with open(output) as handle:
            return json.load(handle)
    mixed = mixed_policies()[-1]
    return [measure(workdir, pattern, f"mod_tree 4x3 {precision}", "MODNeXtVLADModel",
                    precision, "none", inference=False, mod_tree="4x3")
            for precision in ("float32", mixed)]


def split_gpus_for_the_tree():
    """Enough logical GPUs for the tree's four sub-trees (before TensorFlow starts)."""
    gpus = tf.config.list_physical_devices("GPU")
    per_gpu = -(-MOD_GPUS // len(gpus))
    for gpu in gpus:
        tf.config.set_logical_device_configuration(gpu, [
            tf.config.LogicalDeviceConfiguration(memory_limit=FLAGS.logical_gpu_memory_mb)
            for _ in range(per_gpu)])


def main(argv):
    del argv
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("accelerator_check: no GPU visible to TensorFlow on this machine; nothing to "
              "measure (run it where `nvidia-smi` lists GPUs and TensorFlow was built with CUDA).")
        return 0
    unknown = [part for part in FLAGS.parts if part not in PARTS]
    if unknown:
        raise app.UsageError(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    if FLAGS.mod_tree_child:
        split_gpus_for_the_tree()
    workdir = tempfile.mkdtemp(prefix="accelerator_check_")
    pattern = _data(os.path.join(workdir, "data"), FLAGS.batch_size, FLAGS.frames,
                    FLAGS.num_classes)
    if FLAGS.mod_tree_child:
        results = run_mod_tree(workdir, pattern)
        with open(os.path.join(FLAGS.output_dir, "mod_tree.json"), "w") as handle:
            json.dump(results, handle)
        return 0
    runners = {"single": run_single, "mirrored": run_mirrored, "mod_tree": run_mod_tree}
    results = []
    for part in PARTS:
        if part in FLAGS.parts:
            results += runners[part](workdir, pattern)
    report = {"gpus": [tf.config.experimental.get_device_details(gpu) for gpu in gpus],
              "jit_compile": FLAGS.jit_compile, "batch_size": FLAGS.batch_size,
              "frames": FLAGS.frames, "num_classes": FLAGS.num_classes,
              "tensorflow": tf.__version__, "results": results}
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    from yt8m.core import files
    files.write_json_atomically(os.path.join(FLAGS.output_dir, "accelerator_check.json"),
                                report)
    print(f"\n{'configuration':<34} {'train ex/s':>12} {'inference ex/s':>15}")
    for row in results:
        inference = row.get("inference_examples_per_second")
        print(f"{row['name']:<34} {row['train_examples_per_second']:>12.1f} "
              f"{inference if inference is None else format(inference, '.1f'):>15}")
    return 0


if __name__ == "__main__":
    app.run(main)
