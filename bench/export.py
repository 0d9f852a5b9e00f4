"""Ensemble export benchmark: size, GAP and inference speed of float32 / float16 / int8 exports,
and of bit-packed sparse storage (--sparse_weights) of the same members pruned.

    python bench/export.py                                  # synthetic data + quick training
    python bench/export.py --work_dir=/tmp/yt8m_export_bench --train_steps=300

Steps (each reused from --work_dir when already made with the same settings and code,
bench/result_cache.py):
  1. a synthetic data set (yt8m.synthetic.generate) under <work_dir>/data;
  2. two members trained briefly on it with the real trainer: NeXtVLADModel and NetVLADModelLF
     (sizes below), each keeping its last checkpoints;
  3. the same ensemble (NeXtVLAD averaged over its last 2 checkpoints, weights 0.6/0.4) exported
     as float32, float16 and int8 with export_ensemble(), verified on frame/validate;
  4. the same members with --sparsity of every large matrix zeroed by magnitude (numpy, one shot
     after training, no fine-tuning: pruning during training is train.py's job), exported at each
     precision twice: dense (--sparse_weights=0) and bit-packed sparse (--sparse_weights=0.5);
  5. inference speed of every reloaded SavedModel's serving_default on validation batches held in
     memory (so the reader is not measured), all exports loaded together and timed in turn, pass
     after pass (a busy spell of the shared machine hits all of them alike): examples/s (best of
     --passes, wall clock) and the process CPU seconds per example (median); plus the load time
     (which includes densifying the sparse matrices);
  6. the two ways of densifying in TF ops, timed on one --densify_elements matrix: scatter_nd at
     the set bits (what yt8m.export.sparse does) and a gather at the mask's cumulative sum.
Reported per precision: on-disk size, size relative to float32, validation GAP of the float32
ensemble and of the export, max |prediction difference|, examples/s, speed relative to float32;
for the pruned members, sparse against dense at the same precision.
Targets: float16 size <= 0.52 x float32 with |GAP change| < 0.0005, inference speed >= 0.9 x
float32 (issue 6); sparse export speed >= 0.9 x the dense export's (issue 19). Writes
<output>.json, <output>.md and <output>.png.
"""
import dataclasses
import os
import shutil
import time

import numpy as np
from absl import app, logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

import bench_options
import figures
import result_cache
import training_runs
from yt8m.core import files
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.core.config import DataConfig, TrainConfig
from yt8m.export import budget
from yt8m.export import exporter
from yt8m.export import member_module
from yt8m.export import members as members_lib
from yt8m.export import precision as precision_lib
from yt8m.export import sparse
from yt8m.export import validation_data
from yt8m.training import checkpoints
from yt8m.training import trainer

import export_timing
import paper_scale

@dataclasses.dataclass
class Options(bench_options.SyntheticScale, bench_options.Timing, bench_options.SpeedBatches):
    work_dir: str = option("bench/output/export_work", "Data, train dirs and exports.")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 1500)
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 25)
    train_steps: int = option(200, "Training steps per member.", lower=1)
    batch_size: int = override(bench_options.Optimization, "batch_size",
                               help="Batch size of training and of the speed measurement.")
    output: str = option("bench/output/export", "Output path without extension.")
    sparsity: float = option(0.75, "Fraction of each large matrix of the pruned members zeroed "
                             "by magnitude (0: no sparse-storage rows).", lower=0.0, upper=1.0)
    densify_elements: int = option(2 ** 24, "Elements of the matrix the two densify ops are "
                                   "timed on (0: skip).", lower=0)
    scale_sizes: bool = option(True, "Also compute the variable bytes of paper-scale models "
                               "(V=3862) at each precision (built in memory, not trained or "
                               "written).")


options.define_flags(Options)

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
TARGETS = {"float16_size_ratio": 0.52, "float16_gap_change": 0.0005, "speed_ratio": 0.9,
           "sparse_speed_ratio": 0.9}
SPARSE_WEIGHTS = 0.5  # --sparse_weights of the sparse exports (the pruned matrices are at 0.75)


def _data(opts):
    data_dir = training_runs.synthetic_data(
        os.path.join(opts.work_dir, "data"), **bench_options.synthetic_settings(
            opts, seed=11, num_shards=2, min_frames=60, max_frames=150, num_segment_videos=0))
    return (os.path.join(data_dir, "frame", "train*.tfrecord"),
            os.path.join(data_dir, "frame", "validate*.tfrecord"))


def _train_members(opts, work_dir, train_pattern):
    dirs = {}
    for name, (model, hparams) in MEMBERS.items():
        train_dir = os.path.join(work_dir, name)
        dirs[name] = train_dir
        settings = {"model": model, "hparams": hparams, "train_steps": opts.train_steps,
                    "batch_size": opts.batch_size, "num_classes": opts.num_classes,
                    "train_pattern": train_pattern}
        if result_cache.directory_is_fresh(train_dir, settings):
            continue
        shutil.rmtree(train_dir, ignore_errors=True)
        data = DataConfig(**{**vars(FRAME_DATA), "num_classes": opts.num_classes})
        trainer.train(TrainConfig(
            train_dir=train_dir, train_data_pattern=train_pattern, data=data, model=model,
            model_hparams=hparams, batch_size=opts.batch_size, base_learning_rate=2e-3,
            learning_rate_decay=0.8, learning_rate_decay_examples=8000, num_epochs=1000,
            max_steps=opts.train_steps, export_model_steps=max(opts.train_steps // 4, 1),
            log_every_steps=50, shuffle_seed=3, distribution_strategy="one_device"))
        result_cache.stamp_directory(train_dir, settings)
    return dirs


def _prune_by_magnitude(values, sparsity):
    flat = values.reshape(-1).copy()
    flat[np.argsort(np.abs(flat), kind="stable")[:int(round(sparsity * flat.size))]] = 0
    return flat.reshape(values.shape)


def _pruned_member(work_dir, spec_text, sparsity):
    """<work_dir>/<member>_pruned<percent>: the member's (averaged) weights with `sparsity` of each
    large matrix (the exporter's candidates) zeroed by magnitude, saved as one checkpoint."""
    spec = members_lib.parse_member(os.path.join(work_dir, spec_text),
                                    members_lib.CheckpointSelection(members_lib.LATEST))
    name = os.path.basename(os.path.normpath(spec.train_dir))
    train_dir = os.path.join(work_dir, f"{name}_pruned{round(sparsity * 100)}")
    if tf.train.latest_checkpoint(train_dir):
        return train_dir
    member = members_lib.load_member(spec)
    for variable in member_module.unique_variables(member.model):
        if precision_lib.is_low_precision_candidate(variable, precision_lib.DEFAULT_MIN_ELEMENTS):
            variable.assign(_prune_by_magnitude(variable.numpy(), sparsity))
    files.write_json_atomically(model_flags_lib.model_flags_path(train_dir), member.model_flags)
    step = checkpoints.checkpoint_step(member.checkpoints[-1])
    checkpoints.make_checkpoint_manager(tf.train.Checkpoint(model=member.model), train_dir,
                                        1).save(checkpoint_number=step)
    return train_dir


def _gather_densify(mask_bits, values, num_elements):
    """The alternative to sparse.densify: each element takes the value at its mask's cumulative
    sum, zero where the mask is not set."""
    mask = sparse.unpack_mask(mask_bits, num_elements)
    positions = tf.cumsum(tf.cast(mask, tf.int32), exclusive=True)
    gathered = tf.gather(values, tf.minimum(positions, tf.size(values) - 1))
    return tf.where(mask, gathered, tf.zeros_like(gathered))


def _densify_op_seconds(num_elements, sparsity):
    """{op: best seconds of 5} for densifying one matrix, the two ops alternating."""
    rng = np.random.default_rng(0)
    dense = _prune_by_magnitude(rng.normal(size=num_elements).astype(np.float32), sparsity)
    mask_bits = tf.constant(sparse.pack_mask(dense != 0))
    values = tf.constant(dense[dense != 0])
    ops = {"scatter_nd (yt8m.export.sparse)": tf.function(
               lambda: sparse.densify(mask_bits, values, [num_elements])),
           "gather at cumsum": tf.function(
               lambda: _gather_densify(mask_bits, values, num_elements))}
    seconds = {name: [] for name in ops}
    for name, op in ops.items():
        if not np.array_equal(op().numpy(), dense):  # also the warm-up
            raise AssertionError(f"densify op {name} is wrong")
    for _ in range(5):
        for name, op in ops.items():
            start = time.perf_counter()
            op().numpy()
            seconds[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in seconds.items()}


def _scale_sizes():
    """{model: {precision: MB}} from the same byte count the budget check uses."""
    sizes = {}
    for label, (model_name, hparams) in paper_scale.SCALE_MODELS.items():
        model = paper_scale.build(model_name, hparams)
        by_precision = budget.sizes_by_precision(member_module.unique_variables(model),
                                                 precision_lib.DEFAULT_MIN_ELEMENTS)
        sizes[label] = {"parameters": model.count_params(),
                        **{name: value / 2 ** 20 for name, value in by_precision.items()}}
        del model
    return sizes


def _plot(rows, path):
    precisions = [row["precision"] for row in rows]
    figure, axes = figures.subplots(1, 3, figsize=(13, 3.8))
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
    figures.save_png(figure, path)


def _scale_markdown(sizes):
    lines = ["| model (V=3862) | parameters | float32 MB | float16 MB (ratio) | int8 MB (ratio) |",
             "|---|---|---|---|---|"]
    for label, row in sizes.items():
        lines.append(f"| {label} | {row['parameters'] / 1e6:.1f}M | {row['float32']:.1f} | "
                     f"{row['float16']:.1f} ({row['float16'] / row['float32']:.3f}) | "
                     f"{row['int8']:.1f} ({row['int8'] / row['float32']:.3f}) |")
    return "\n".join(lines) + "\n"


def _markdown(rows, command, passes):
    lines = ["| precision | on disk (MB) | size / float32 | GAP float32 | GAP export | "
             "max abs diff | examples/s | speed / float32 | CPU ms/example |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['precision']} | {row['on_disk_mb']:.2f} | {row['size_ratio']:.3f} | "
            f"{row['gap_float32']:.5f} | {row['gap_exported']:.5f} | "
            f"{row['max_abs_prediction_diff']:.2g} | {row['examples_per_second']:.0f} | "
            f"{row['speed_ratio']:.2f} | {row['cpu_ms_per_example']:.2f} |")
    return (f"Command: `{command}`\n\nMachine shared with other jobs: speeds are best of "
            f"{passes} passes, every export timed in turn in each pass.\n\n"
            + "\n".join(lines) + "\n")


def _sparse_markdown(rows, sparsity):
    lines = [f"Members pruned to sparsity {sparsity:g} by magnitude (one shot, no "
             "fine-tuning), exported dense and with --sparse_weights="
             f"{SPARSE_WEIGHTS:g}. Size ratio against the unpruned float32 export; GAP float32 "
             "is the pruned float32 ensemble; speed sparse / dense at the same precision.",
             "",
             "| precision | storage | on disk (MB) | size / float32 | sparse matrices: stored / "
             "dense | GAP float32 | GAP export | max abs diff | examples/s | speed sparse / dense "
             "| CPU ms/example | load s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['precision']} | {row['storage']} | {row['on_disk_mb']:.2f} | "
            f"{row['size_ratio']:.3f} | {row['sparse_stored_ratio']} | "
            f"{row['gap_float32']:.5f} | {row['gap_exported']:.5f} | "
            f"{row['max_abs_prediction_diff']:.2g} | {row['examples_per_second']:.0f} | "
            f"{row['speed_ratio']} | {row['cpu_ms_per_example']:.2f} | "
            f"{row['load_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def _export_row(label, export_dir, report, **fields):
    sparse_groups = [group for group in report["tensor_groups"] if group["group"] == "sparse"]
    stored = sum(group["stored_bytes"] for group in sparse_groups)
    dense = sum(group["dense_bytes"] for group in sparse_groups)
    return {"label": label, "export_dir": export_dir, "precision": report["precision"],
            "on_disk_bytes": report["on_disk_bytes"],
            "on_disk_mb": report["on_disk_bytes"] / 2 ** 20,
            "variable_bytes": report["size_bytes"][report["precision"]],
            "sparse_stored_ratio": f"{stored / dense:.3f}" if dense else "-",
            "gap_float32": report["gap_float32"], "gap_exported": report["gap_exported"],
            "gap_change": report["gap_exported"] - report["gap_float32"],
            "max_abs_prediction_diff": report["max_abs_prediction_diff"],
            "gap_videos": report["verified_videos"], **fields}


def main(argv):
    del argv
    opts = options.from_flags(Options)
    work_dir = opts.work_dir
    os.makedirs(work_dir, exist_ok=True)
    train_pattern, validate_pattern = _data(opts)
    dirs = _train_members(opts, work_dir, train_pattern)
    members = [os.path.join(work_dir, spec) for spec in MEMBER_SPECS]
    batches = list(validation_data.frame_batches(
        validate_pattern, "validate", opts.batch_size, opts.batch_size * opts.speed_batches,
        opts.num_classes, MAX_FRAMES))

    def export(name, export_members, precision, sparse_weights=0.0):
        export_dir = os.path.join(work_dir, f"export_{name}")
        report = exporter.export_ensemble(exporter.ExportConfig(
            members=export_members, weights=list(WEIGHTS), output_dir=export_dir,
            precision=precision, sparse_weights=sparse_weights,
            eval_data_pattern=validate_pattern, overwrite=True))
        return export_dir, report

    rows = [_export_row(precision, *export(precision, members, precision))
            for precision in precision_lib.PRECISIONS]
    sparse_rows = []
    if opts.sparsity > 0:
        pruned = [_pruned_member(work_dir, spec, opts.sparsity) for spec in MEMBER_SPECS]
        for precision in precision_lib.PRECISIONS:
            for storage, sparse_weights in (("dense", 0.0), ("sparse", SPARSE_WEIGHTS)):
                name = f"pruned_{precision}_{storage}"
                sparse_rows.append(_export_row(name, *export(name, pruned, precision,
                                                             sparse_weights), storage=storage))
    timings = export_timing.time_exports([row["export_dir"] for row in rows + sparse_rows],
                                         batches, opts.passes)
    for row in rows + sparse_rows:
        timing = timings[row["export_dir"]]
        row.update(examples_per_second=timing.examples_per_second,
                   cpu_ms_per_example=timing.cpu_seconds_per_example * 1000,
                   load_seconds=timing.load_seconds)
        logging.info("%s: %s", row["label"], row)
    base = rows[0]
    for row in rows + sparse_rows:
        row["size_ratio"] = row["on_disk_bytes"] / base["on_disk_bytes"]
    for row in rows:
        row["speed_ratio"] = row["examples_per_second"] / base["examples_per_second"]
    for row in sparse_rows:
        dense = next(other for other in sparse_rows if other["storage"] == "dense"
                     and other["precision"] == row["precision"])
        row["speed_ratio"] = (f"{row['examples_per_second'] / dense['examples_per_second']:.2f}"
                              if row["storage"] == "sparse" else "1")
    command = ("python bench/export.py " + " ".join(
        f"--{name}={getattr(opts, name)}" for name in
        ("work_dir", "num_videos", "num_classes", "train_steps", "batch_size", "speed_batches",
         "passes", "sparsity", "densify_elements")))
    result = {"command": command, "members": {name: dirs[name] for name in dirs},
              "weights": WEIGHTS, "targets": TARGETS, "rows": rows, "sparse_rows": sparse_rows,
              "load_average": os.getloadavg(), "cpu_count": os.cpu_count()}
    os.makedirs(os.path.dirname(opts.output) or ".", exist_ok=True)
    text = _markdown(rows, command, opts.passes)
    if sparse_rows:
        text += "\n" + _sparse_markdown(sparse_rows, opts.sparsity)
    if opts.densify_elements:
        result["densify_seconds"] = _densify_op_seconds(opts.densify_elements, opts.sparsity
                                                        or 0.75)
        text += (f"\nDensifying one matrix of {opts.densify_elements} elements at sparsity "
                 f"{opts.sparsity or 0.75:g} (best of 5, alternating): " + ", ".join(
                     f"{name} {seconds * 1000:.0f} ms"
                     for name, seconds in result["densify_seconds"].items()) + "\n")
    if opts.scale_sizes:
        result["scale_sizes_mb"] = _scale_sizes()
        text += ("\nVariable bytes at paper scale (computed by yt8m.export.budget, as the budget "
                 "check does; not written):\n\n" + _scale_markdown(result["scale_sizes_mb"]))
    files.write_json_atomically(opts.output + ".json", result)
    files.write_text_atomically(opts.output + ".md", text)
    _plot(rows, opts.output + ".png")
    print(text)


if __name__ == "__main__":
    app.run(main)
