"""Ensemble export benchmark: size, GAP and inference speed of float32 / float16 / int8 exports.

    python bench/export.py                                  # synthetic data + quick training
    python bench/export.py --work_dir=/tmp/yt8m_export_bench --train_steps=300

Steps (each reused from --work_dir when already made with the same settings and code,
bench/result_cache.py):
  1. a synthetic data set (yt8m.synthetic.generate) under <work_dir>/data;
  2. two members trained briefly on it with the real trainer: NeXtVLADModel and NetVLADModelLF
     (sizes below), each keeping its last checkpoints;
  3. the same ensemble (NeXtVLAD averaged over its last 2 checkpoints, weights 0.6/0.4) exported
     as float32, float16 and int8 with export_ensemble(), verified on frame/validate;
  4. inference speed of each reloaded SavedModel's serving_default on validation batches held in
     memory (so the reader is not measured): examples/s (best of --passes, wall clock) and the
     process CPU seconds per example (steadier when the machine is shared).
Reported per precision: on-disk size, size relative to float32, validation GAP of the float32
ensemble and of the export, max |prediction difference|, examples/s, speed relative to float32.
Targets (issue 6): float16 size <= 0.52 x float32 with |GAP change| < 0.0005; inference speed
>= 0.9 x float32. Writes <output>.json, <output>.md and <output>.png.
"""
import os
import shutil
import statistics
import time

import matplotlib
from absl import app, flags, logging

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402  (after choosing the headless backend)

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

import frame_level_models
from yt8m import synthetic
from yt8m.core import files
from yt8m.core.config import DataConfig, TrainConfig
from yt8m.data import records
from yt8m.export import budget
from yt8m.export import exporter
from yt8m.export import member_module
from yt8m.export import precision as precision_lib
from yt8m.export import serving
from yt8m.export import validation_data
from yt8m.training import trainer

import result_cache

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "bench/output/export_work", "Data, train dirs and exports.")
flags.DEFINE_integer("num_videos", 1500, "Synthetic videos (train + validate + test).")
flags.DEFINE_integer("num_classes", 25, "Synthetic vocabulary size.")
flags.DEFINE_integer("train_steps", 200, "Training steps per member.")
flags.DEFINE_integer("batch_size", 32, "Batch size of training and of the speed measurement.")
flags.DEFINE_integer("speed_batches", 8, "Validation batches timed per pass.")
flags.DEFINE_integer("passes", 3, "Timed passes (after one warm-up pass).")
flags.DEFINE_string("output", "bench/output/export", "Output path without extension.")
flags.DEFINE_bool("scale_sizes", True, "Also compute the variable bytes of paper-scale models "
                  "(V=3862) at each precision (built in memory, not trained or written).")

MAX_FRAMES = 120
FRAME_DATA = DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                        frame_features=True, max_frames=MAX_FRAMES, num_readers=2)
MEMBERS = {
    "nextvlad": ("NeXtVLADModel", {"nextvlad_cluster_size": 32, "groups": 4, "expansion": 2,
                                   "nextvlad_hidden_size": 256, "sample_random_frames": True,
                                   "iterations": 40}),
    "netvlad": ("NetVLADModelLF", {"netvlad_cluster_size": 16, "netvlad_hidden_size": 256,
                                   "sample_random_frames": True, "iterations": 40}),
}
MEMBER_SPECS = ("nextvlad@last:2", "netvlad")
WEIGHTS = (0.6, 0.4)
# Paper-scale members whose sizes are computed (not exported): NeXtVLAD's paper configuration and a
# Gated NetVLAD K32-H1024 (the float16 paper's "H" model family).
SCALE_MODELS = {"NeXtVLADModel (8G 128K x2 2048H)": ("NeXtVLADModel", {}),
                "NetVLADModelLF K32-H1024": ("NetVLADModelLF", {"netvlad_cluster_size": 32,
                                                                "netvlad_hidden_size": 1024})}
TARGETS = {"float16_size_ratio": 0.52, "float16_gap_change": 0.0005, "speed_ratio": 0.9}


def _data(work_dir):
    data_dir = os.path.join(work_dir, "data")
    options = dict(num_videos=FLAGS.num_videos, num_classes=FLAGS.num_classes, seed=11,
                   num_shards=2, min_frames=60, max_frames=150, num_segment_videos=0)
    if not result_cache.directory_is_fresh(data_dir, options, result_cache.DATA_SOURCES):
        shutil.rmtree(data_dir, ignore_errors=True)
        synthetic.generate(data_dir, **options)
        result_cache.stamp_directory(data_dir, options, result_cache.DATA_SOURCES)
    return (os.path.join(data_dir, "frame", "train*.tfrecord"),
            os.path.join(data_dir, "frame", "validate*.tfrecord"))


def _train_members(work_dir, train_pattern):
    dirs = {}
    for name, (model, hparams) in MEMBERS.items():
        train_dir = os.path.join(work_dir, name)
        dirs[name] = train_dir
        settings = {"model": model, "hparams": hparams, "train_steps": FLAGS.train_steps,
                    "batch_size": FLAGS.batch_size, "num_classes": FLAGS.num_classes,
                    "train_pattern": train_pattern}
        if result_cache.directory_is_fresh(train_dir, settings):
            continue
        shutil.rmtree(train_dir, ignore_errors=True)
        data = DataConfig(**{**vars(FRAME_DATA), "num_classes": FLAGS.num_classes})
        trainer.train(TrainConfig(
            train_dir=train_dir, train_data_pattern=train_pattern, data=data, model=model,
            model_hparams=hparams, batch_size=FLAGS.batch_size, base_learning_rate=2e-3,
            learning_rate_decay=0.8, learning_rate_decay_examples=8000, num_epochs=1000,
            max_steps=FLAGS.train_steps, export_model_steps=max(FLAGS.train_steps // 4, 1),
            log_every_steps=50, shuffle_seed=3, distribution_strategy="one_device"))
        result_cache.stamp_directory(train_dir, settings)
    return dirs


def _speed(export_dir, batches):
    """(best examples/s over the passes, median CPU seconds per example)."""
    serve = tf.saved_model.load(export_dir).signatures[serving.SERVING_DEFAULT]
    count = sum(int(batch["num_frames"].shape[0]) for batch in batches)

    def one_pass():
        for batch in batches:
            serve(rgb=batch["rgb"], audio=batch["audio"], num_frames=batch["num_frames"])

    one_pass()  # warm-up
    rates, cpu = [], []
    for _ in range(FLAGS.passes):
        wall, process = time.perf_counter(), time.process_time()
        one_pass()
        rates.append(count / (time.perf_counter() - wall))
        cpu.append((time.process_time() - process) / count)
    return max(rates), statistics.median(cpu)


def _scale_sizes():
    """{model: {precision: MB}} from the same byte count the budget check uses."""
    sizes = {}
    for label, (model_name, hparams) in SCALE_MODELS.items():
        model = frame_level_models.build(model_name, records.DEFAULT_NUM_CLASSES,
                                         feature_names="rgb,audio", feature_sizes="1024,128",
                                         **hparams)
        by_precision = budget.sizes_by_precision(member_module.unique_variables(model),
                                                 precision_lib.DEFAULT_MIN_ELEMENTS)
        sizes[label] = {"parameters": model.count_params(),
                        **{name: value / 2 ** 20 for name, value in by_precision.items()}}
        del model
    return sizes


def _plot(rows, path):
    precisions = [row["precision"] for row in rows]
    figure, axes = pyplot.subplots(1, 3, figsize=(13, 3.8))
    panels = [("size_ratio", "size / float32", TARGETS["float16_size_ratio"]),
              ("speed_ratio", "examples/s / float32", TARGETS["speed_ratio"]),
              ("gap_change", "GAP(export) - GAP(float32)", None)]
    for axis, (key, title, target) in zip(axes, panels):
        values = [row[key] for row in rows]
        axis.bar(precisions, values, color=["#4c72b0", "#55a868", "#c44e52"])
        for index, value in enumerate(values):
            axis.annotate(f"{value:.4g}", (index, value), ha="center", va="bottom")
        if target is not None:
            axis.axhline(target, color="black", linestyle="--", linewidth=1,
                         label=f"target {target:g}")
            axis.legend(loc="lower right")
        axis.set_title(title)
    figure.suptitle("Ensemble export: NeXtVLAD (2-checkpoint average) 0.6 + NetVLAD 0.4")
    figure.tight_layout()
    with files.atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=110)
    pyplot.close(figure)


def _scale_markdown(sizes):
    lines = ["| model (V=3862) | parameters | float32 MB | float16 MB (ratio) | int8 MB (ratio) |",
             "|---|---|---|---|---|"]
    for label, row in sizes.items():
        lines.append(f"| {label} | {row['parameters'] / 1e6:.1f}M | {row['float32']:.1f} | "
                     f"{row['float16']:.1f} ({row['float16'] / row['float32']:.3f}) | "
                     f"{row['int8']:.1f} ({row['int8'] / row['float32']:.3f}) |")
    return "\n".join(lines) + "\n"


def _markdown(rows, command):
    lines = ["| precision | on disk (MB) | size / float32 | GAP float32 | GAP export | "
             "max abs diff | examples/s | speed / float32 | CPU ms/example |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['precision']} | {row['on_disk_mb']:.2f} | {row['size_ratio']:.3f} | "
            f"{row['gap_float32']:.5f} | {row['gap_exported']:.5f} | "
            f"{row['max_abs_prediction_diff']:.2g} | {row['examples_per_second']:.0f} | "
            f"{row['speed_ratio']:.2f} | {row['cpu_ms_per_example']:.2f} |")
    return (f"Command: `{command}`\n\nMachine shared with other jobs: speeds are indicative.\n\n"
            + "\n".join(lines) + "\n")


def main(argv):
    del argv
    work_dir = FLAGS.work_dir
    os.makedirs(work_dir, exist_ok=True)
    train_pattern, validate_pattern = _data(work_dir)
    dirs = _train_members(work_dir, train_pattern)
    members = [os.path.join(work_dir, spec) for spec in MEMBER_SPECS]
    batches = list(validation_data.frame_batches(
        validate_pattern, "validate", FLAGS.batch_size, FLAGS.batch_size * FLAGS.speed_batches,
        FLAGS.num_classes, MAX_FRAMES))
    rows = []
    for precision in precision_lib.PRECISIONS:
        export_dir = os.path.join(work_dir, f"export_{precision}")
        report = exporter.export_ensemble(exporter.ExportConfig(
            members=members, weights=list(WEIGHTS), output_dir=export_dir, precision=precision,
            eval_data_pattern=validate_pattern, overwrite=True))
        rate, cpu = _speed(export_dir, batches)
        rows.append({"precision": precision, "on_disk_bytes": report["on_disk_bytes"],
                     "on_disk_mb": report["on_disk_bytes"] / 2 ** 20,
                     "variable_bytes": report["size_bytes"][precision],
                     "gap_float32": report["gap_float32"], "gap_exported": report["gap_exported"],
                     "gap_change": report["gap_exported"] - report["gap_float32"],
                     "max_abs_prediction_diff": report["max_abs_prediction_diff"],
                     "examples_per_second": rate, "cpu_ms_per_example": cpu * 1000,
                     "gap_videos": report["verified_videos"]})
        logging.info("%s: %s", precision, rows[-1])
    base = rows[0]
    for row in rows:
        row["size_ratio"] = row["on_disk_bytes"] / base["on_disk_bytes"]
        row["speed_ratio"] = row["examples_per_second"] / base["examples_per_second"]
    command = ("python bench/export.py " + " ".join(
        f"--{name}={FLAGS[name].value}" for name in
        ("work_dir", "num_videos", "num_classes", "train_steps", "batch_size", "speed_batches",
         "passes")))
    result = {"command": command, "members": {name: dirs[name] for name in dirs},
              "weights": WEIGHTS, "targets": TARGETS, "rows": rows,
              "load_average": os.getloadavg(), "cpu_count": os.cpu_count()}
    os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
    text = _markdown(rows, command)
    if FLAGS.scale_sizes:
        result["scale_sizes_mb"] = _scale_sizes()
        text += ("\nVariable bytes at paper scale (computed by yt8m.export.budget, as the budget "
                 "check does; not written):\n\n" + _scale_markdown(result["scale_sizes_mb"]))
    files.write_json_atomically(FLAGS.output + ".json", result)
    files.write_text_atomically(FLAGS.output + ".md", text)
    _plot(rows, FLAGS.output + ".png")
    print(text)


if __name__ == "__main__":
    app.run(main)
