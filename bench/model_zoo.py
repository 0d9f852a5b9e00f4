"""Model-zoo benchmark, three parts (--parts):

speed      NeXtVLADModel in the paper configuration (batch 80 x 300 frames, 3862 classes) against
           this machine's matmul rate, under each --speed_precisions policy (float32 and
           mixed_bfloat16: one row each, the efficiency against the matmul rate of the policy's
           compute dtype, and the speed-up over float32; --speed_jit_compile adds XLA rows). It
           times a compiled inference call, a compiled forward + backward pass ("gradients")
           and a compiled training step (with the Adam update, whose element-wise work is not in
           the FLOP count), counts the matmul FLOPs analytically (zoo_flops.py) and divides the
           time a perfect matmul engine would need by the measured time: efficiency 1.0 = as fast
           as the matmuls alone. Times are the best of --steps calls after a warm-up; the matmul
           rate is measured right before and after each timing and the higher one used; a
           second efficiency uses process CPU seconds for both (the one to read on a shared
           machine). The report says whether the CPU has native bfloat16 (the avx512_bf16 /
           amx_bf16 flags): without it bfloat16 is emulated and its slowdown says nothing about
           bfloat16 hardware.
quality    every zoo model trained for the same budget on one synthetic set (zoo_quality.py):
           parameters, validation GAP/MAP/Hit@1, training and inference examples/s.
bucketing  the paper NeXtVLAD on 60-300-frame synthetic videos, padded to 300 frames vs bucketed
           by num_frames (--frame_buckets), inference and training (zoo_bucketing.py): speed-up,
           examples/s against the padded ideal, and the largest prediction difference.

    .venv/bin/python bench/model_zoo.py                              # all three parts
    .venv/bin/python bench/model_zoo.py --parts=speed --models=NeXtVLADModel,NetVLADModelLF

Writes model_zoo.json / model_zoo.png (speed), zoo_quality.{json,md,png} and
zoo_bucketing.{json,png} under --output_dir (bench/output).
"""
import dataclasses
import os

from absl import app

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

import bench_options
import figures
import frame_level_models
import training_runs
import zoo_bucketing
import zoo_flops
import zoo_quality
from frame_level_models import hparams as hparams_lib
from yt8m.core import files
from yt8m.core import options
from yt8m.core.option_groups import FrameBuckets
from yt8m.core.options import option, override
from yt8m.core.config import MIXED_PRECISION_POLICIES
from yt8m.data import bucketing
from yt8m.training import mixed_precision

PARTS = ("speed", "quality", "bucketing")


@dataclasses.dataclass
class Options(bench_options.Output, bench_options.Seed, bench_options.VideoLearningRate,
              bench_options.TrainFrames, bench_options.BatchNorm, bench_options.Reuse):
    output_dir: str = override(bench_options.Output, "output_dir",
                               os.path.join(os.path.dirname(__file__), "output"))
    parts: tuple[str, ...] = option(PARTS, f"Parts to run: {', '.join(PARTS)}.")
    # speed
    models: tuple[str, ...] = option(("NeXtVLADModel",), "speed: models to time (NeXtVLADModel, "
                                     "NetVLADModelLF).")
    batch_size: int = override(bench_options.Optimization, "batch_size", 80,
                               help="speed and bucketing: videos per batch (NeXtVLAD paper: "
                               "80).")
    frames: int = option(300, "speed: frames per video, all valid; bucketing: max_frames.",
                         lower=1)
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 3862,
                                help="speed and bucketing: vocabulary size of the model.")
    steps: int = option(3, "speed: timed calls per measurement (the best one is reported).",
                        lower=1)
    optimizer: str = option(
        "fused_adam", "speed: fused_adam: keras.optimizers.legacy.Adam (one fused kernel per "
        "variable); adam: keras.optimizers.Adam (several element-wise ops per variable, ~3x the "
        "time).", choices=("fused_adam", "adam"))
    inter_op_threads: int = option(
        0, "TF inter-op threads (0: TF's default). 1 keeps two large matmuls from running at "
        "once and oversubscribing the cores.", lower=0)
    matmul_size: int = option(4096, "Side of the square matmul that measures the rate.",
                              lower=1)
    speed_precisions: tuple[str, ...] = option(
        ("float32", "mixed_bfloat16"), "speed: --mixed_precision policies to time (float32 "
        "first: the speed-ups are against it).")
    speed_jit_compile: bool = option(
        False, "speed: also time every policy with the functions compiled by XLA (train.py's "
        "--jit_compile), beside the plain ones.")
    # quality
    quality_videos: int = override(bench_options.SyntheticScale, "num_videos", 3000,
                                   help="quality: synthetic videos (80% train).")
    quality_classes: int = override(bench_options.SyntheticScale, "num_classes", 60,
                                    help="quality: vocabulary size.")
    quality_epochs: int = option(5, "quality: epochs of every model.", lower=1)
    quality_batch_size: int = override(bench_options.Optimization, "batch_size", 64,
                                       help="quality: training batch size.")
    frame_learning_rate: float = override(bench_options.Optimization, "learning_rate",
                                          help="quality: Adam learning rate, frame level.")
    video_learning_rate: float = override(bench_options.VideoLearningRate,
                                          "video_learning_rate",
                                          help="quality: Adam learning rate, video level.")
    train_frames: int = override(bench_options.TrainFrames, "train_frames",
                                 help="quality: random frames per training video.")
    bn_momentum: float = override(
        bench_options.BatchNorm, "bn_momentum", 0.9, help="quality: batch-norm momentum. The "
        "runs are a few hundred steps: at 0.99 the moving variances still carry ~8% of their "
        "initial 1.0 after 250 steps, far above NetVLAD's ~1e-3 activation variance (validation "
        "GAP 0.11 with moving statistics vs 0.56 with batch statistics, measured).")
    quality_models: tuple[str, ...] = option(
        (), "quality: only these models (default: the whole zoo).")
    quality_precisions: tuple[str, ...] = option(
        ("float32",), "quality: train every model under each of these --mixed_precision "
        f"policies ({', '.join(MIXED_PRECISION_POLICIES)}).")
    reuse: bool = override(bench_options.Reuse, "reuse",
                           help="quality: keep results of runs done with the same settings.")
    # bucketing
    bucketing_videos: int = override(bench_options.SyntheticScale, "num_videos", 480,
                                     help="bucketing: synthetic videos of 60-300 frames.")
    frame_buckets: tuple[int, ...] = override(
        FrameBuckets, "frame_buckets", (100, 140, 180, 220, 260, 300),
        help="bucketing: bucket upper bounds in frames.")
    bucketing_passes: int = override(bench_options.Timing, "passes", help="bucketing: timed "
                                     "passes per mode (modes alternate; the fastest pass of "
                                     "each is reported).")


options.define_flags(Options)


BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bfloat16_flags():
    """The CPU flags of native bfloat16 arithmetic this machine has (empty: bfloat16 is emulated
    in float32 units, slower than float32 itself)."""
    try:
        with open("/proc/cpuinfo") as handle:
            present = set(handle.read().split())
    except OSError:
        return []
    return [flag for flag in BFLOAT16_CPU_FLAGS if flag in present]


def time_model(opts, name, batch, frames, classes, steps, precision="float32",
               jit_compile=False):
    hp = {h: hparams_lib.default_value(name, h) for h in frame_level_models.hparam_names(name)}
    with mixed_precision.policy_scope(precision):
        model = frame_level_models.build(name, classes)
    compute_dtype = keras.mixed_precision.Policy(precision).compute_dtype
    inputs = {"rgb": tf.random.normal([batch, frames, zoo_flops.RGB]),
              "audio": tf.random.normal([batch, frames, zoo_flops.AUDIO]),
              "num_frames": tf.fill([batch], frames)}
    labels = tf.cast(tf.random.uniform([batch, classes]) < 0.01, tf.float32)
    optimizer = (keras.optimizers.legacy.Adam(2e-4) if opts.optimizer == "fused_adam"
                 else keras.optimizers.Adam(2e-4))

    @tf.function(jit_compile=jit_compile)
    def infer():
        return model(inputs, training=False)["predictions"]

    def loss_and_gradients():
        with tf.GradientTape() as tape:
            predictions = model(inputs, training=True)["predictions"]
            loss = tf.reduce_mean(tf.reduce_sum(
                keras.backend.binary_crossentropy(labels, predictions), axis=1))
        return loss, tape.gradient(loss, model.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def gradients_only():
        loss, gradients = loss_and_gradients()
        # Consume every gradient cheaply so none is pruned from the graph.
        return loss + tf.add_n([gradient[0, ...] if gradient.shape.rank == 1 else
                                gradient[0, 0] for gradient in gradients]) * 0.0

    @tf.function(jit_compile=jit_compile)
    def train_step():
        loss, gradients = loss_and_gradients()
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    results = {"params": model.count_params()}
    shapes = zoo_flops.MATMULS[name](batch, frames, classes, hp)
    forward_work = zoo_flops.flops(shapes, False)
    for mode, function in (("inference", lambda: infer().numpy()),
                           ("gradients", lambda: gradients_only().numpy()),
                           ("training", lambda: train_step().numpy())):
        before = zoo_flops.matmul_rates(opts.matmul_size, dtype=compute_dtype)
        seconds, median, cpu_seconds = zoo_flops.best_seconds(function, steps)
        after = zoo_flops.matmul_rates(opts.matmul_size, dtype=compute_dtype)
        rate, cpu_rate = max(before[0], after[0]), max(before[1], after[1])
        work = zoo_flops.flops(shapes, mode != "inference")
        # The usual rule of thumb: a training step costs 3x the forward FLOPs. The exact count
        # (`work`) is lower (~2.6x) because the data needs no input gradient.
        rule_of_thumb = forward_work * (1 if mode == "inference" else 3)
        r = results[mode] = {
            "seconds": seconds, "median_seconds": median, "cpu_seconds": cpu_seconds,
            "gflop": work / 1e9, "matmul_gflops": rate / 1e9,
            "model_gflops": work / seconds / 1e9,
            "efficiency": work / rate / seconds,
            "cpu_efficiency": work / cpu_rate / cpu_seconds,
            "gflop_3x_forward": rule_of_thumb / 1e9,
            "efficiency_3x_forward": rule_of_thumb / rate / seconds,
            "cpu_efficiency_3x_forward": rule_of_thumb / cpu_rate / cpu_seconds}
        print(f"{name} {precision}{' XLA' if jit_compile else ''} {mode}: {seconds:.3f} s per "
              f"batch, {r['gflop']:.1f} GFLOP, {r['model_gflops']:.1f} GFLOP/s vs "
              f"{compute_dtype} matmul {r['matmul_gflops']:.1f} GFLOP/s -> "
              f"efficiency {r['efficiency']:.2f} (per CPU second: {r['cpu_efficiency']:.2f}); "
              f"counting 3x forward FLOPs: {r['efficiency_3x_forward']:.2f} "
              f"({r['cpu_efficiency_3x_forward']:.2f})", flush=True)
    return results


def _save(figure, path):
    figures.save_png(figure, path, dpi=100)
    print("wrote", path)


def _write_json(report, path):
    files.write_json_atomically(path, report)
    print("wrote", path)


def run_speed(opts, output_dir):
    unknown = [name for name in opts.models if name not in zoo_flops.MATMULS]
    if unknown:
        raise app.UsageError(f"--models: no FLOP count for {unknown}; choose from "
                             f"{', '.join(zoo_flops.MATMULS)}")
    for precision in opts.speed_precisions:
        mixed_precision.check_policy(precision, "--speed_precisions")
    bfloat16_flags = cpu_bfloat16_flags()
    report = {"optimizer": opts.optimizer, "inter_op_threads": opts.inter_op_threads,
              "batch_size": opts.batch_size, "frames": opts.frames,
              "num_classes": opts.num_classes, "cpu_count": os.cpu_count(),
              "tensorflow": tf.__version__, "cpu_bfloat16_flags": bfloat16_flags, "models": {}}
    if not bfloat16_flags and any("bfloat16" in p for p in opts.speed_precisions):
        print("Note: this CPU has no native bfloat16 (no avx512_bf16 / amx_bf16 flag): its "
              "bfloat16 matmuls are emulated, so a mixed_bfloat16 slowdown here is no finding "
              "about bfloat16 hardware.", flush=True)
    modes = ("inference", "gradients", "training")
    for name in opts.models:
        for precision in opts.speed_precisions:
            for jit_compile in (False, True) if opts.speed_jit_compile else (False,):
                row = " ".join([name] + [precision] * (precision != "float32")
                               + ["XLA"] * jit_compile)
                report["models"][row] = dict(
                    precision=precision, jit_compile=jit_compile,
                    **time_model(opts, name, opts.batch_size, opts.frames, opts.num_classes,
                                 opts.steps, precision, jit_compile))
                if row != name and name in report["models"]:  # against plain float32
                    for mode in modes:
                        report["models"][row][mode]["speedup_over_float32"] = (
                            report["models"][name][mode]["seconds"]
                            / report["models"][row][mode]["seconds"])
                    print(f"{row} speed-up over plain float32: " + ", ".join(
                        f"{mode} x{report['models'][row][mode]['speedup_over_float32']:.2f}"
                        for mode in modes), flush=True)
    _write_json(report, os.path.join(output_dir, "model_zoo.json"))

    # CPU-time efficiencies only: on a shared machine the wall-clock ones (in the JSON) swing
    # with the other processes, the CPU-time ones stay put.
    names = list(report["models"])
    figure, axis = figures.subplots(figsize=(4 + 3 * len(names), 4))
    width = 0.14
    mode_colors = {"inference": "C0", "gradients": "C1", "training": "C2"}
    bars_per_model = (("inference", "cpu_efficiency", "inference"),
                      ("gradients", "cpu_efficiency", "gradients"),
                      ("training", "cpu_efficiency", "training"),
                      ("gradients", "cpu_efficiency_3x_forward", "gradients, 3x forward FLOPs"),
                      ("training", "cpu_efficiency_3x_forward", "training, 3x forward FLOPs"))
    for index, (mode, key, label) in enumerate(bars_per_model):
        values = [report["models"][name][mode][key] for name in names]
        hatched = key.endswith("3x_forward")
        bars = axis.bar([i + (index - 2) * width for i in range(len(names))], values, width,
                        label=label, color=mode_colors[mode], hatch="//" if hatched else None,
                        alpha=0.6 if hatched else 1.0)
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.axhline(0.85, color="gray", linestyle="--", linewidth=1, label="target 0.85")
    axis.set_xticks(range(len(names)), [name.replace(" ", "\n") for name in names])
    axis.set_ylabel("matmul-FLOP CPU time / measured CPU time")
    axis.set_title(f"batch {report['batch_size']} x {report['frames']} frames, "
                   f"{report['cpu_count']} CPUs, {report['optimizer']}")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    _save(figure, os.path.join(output_dir, "model_zoo.png"))


def run_quality(opts, output_dir):
    rows = zoo_quality.run(
        os.path.join(output_dir, "zoo_quality"), num_videos=opts.quality_videos,
        num_classes=opts.quality_classes, epochs=opts.quality_epochs,
        batch_size=opts.quality_batch_size, frame_learning_rate=opts.frame_learning_rate,
        video_learning_rate=opts.video_learning_rate, train_frames=opts.train_frames,
        bn_momentum=opts.bn_momentum, seed=opts.seed, models=opts.quality_models,
        reuse=opts.reuse, precisions=opts.quality_precisions)
    _write_json({"rows": rows}, os.path.join(output_dir, "zoo_quality.json"))
    table = zoo_quality.table(rows) + (
        f"\n{opts.quality_videos} synthetic videos (80% train, 20% validate), "
        f"{opts.quality_classes} classes, 60-360 frames (models keep 300); "
        f"{opts.quality_epochs} epochs, batch {opts.quality_batch_size}, Adam "
        f"{opts.frame_learning_rate:g} (frame) / {opts.video_learning_rate:g} (video), "
        f"{opts.train_frames} random training frames, BN momentum {opts.bn_momentum}, "
        f"seed {opts.seed}.\n")
    files.write_text_atomically(os.path.join(output_dir, "zoo_quality.md"), table)
    print(table)
    figure, axes = figures.subplots(1, 2, figsize=(12, 0.6 * len(rows) + 1.5))
    zoo_quality.plot(rows, axes)
    figure.suptitle(f"Model zoo, same budget ({opts.quality_epochs} epochs) on synthetic "
                    "YouTube-8M (bench/model_zoo.py --parts=quality)", fontsize=10)
    _save(figure, os.path.join(output_dir, "zoo_quality.png"))


def run_bucketing(opts, output_dir):
    boundaries = bucketing.parse_boundaries(opts.frame_buckets, opts.frames)
    data_dir = zoo_bucketing_data(opts, output_dir)
    report = zoo_bucketing.run(data_dir, "NeXtVLADModel", opts.batch_size, opts.frames,
                               opts.num_classes, boundaries, opts.matmul_size,
                               opts.bucketing_passes)
    _write_json(report, os.path.join(output_dir, "zoo_bucketing.json"))
    figure, axis = figures.subplots(figsize=(7, 4.5))
    zoo_bucketing.plot(report, axis)
    _save(figure, os.path.join(output_dir, "zoo_bucketing.png"))


def zoo_bucketing_data(opts, output_dir):
    # Labels of at most 60 classes (the model's vocabulary, --num_classes, holds them).
    settings = dict(num_videos=opts.bucketing_videos, num_classes=min(60, opts.num_classes),
                    min_frames=60, max_frames=opts.frames, seed=opts.seed, validate_fraction=0.0,
                    test_fraction=0.0, num_segment_videos=0, num_shards=2)
    return training_runs.synthetic_data(training_runs.settings_dir(
        os.path.join(output_dir, "zoo_bucketing"), "data", settings), **settings)


def main(argv):
    del argv
    opts = options.from_flags(Options)
    unknown = [part for part in opts.parts if part not in PARTS]
    if unknown:
        raise app.UsageError(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    if opts.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(opts.inter_op_threads)
    os.makedirs(opts.output_dir, exist_ok=True)
    runners = {"speed": run_speed, "quality": run_quality, "bucketing": run_bucketing}
    for part in PARTS:
        if part in opts.parts:
            runners[part](opts, opts.output_dir)


if __name__ == "__main__":
    app.run(main)
