"""Model-zoo benchmark, three parts (--parts):

speed      NeXtVLADModel in the paper configuration (batch 80 x 300 frames, 3862 classes) against
           this machine's matmul rate, under each --speed_precisions policy (float32 and
           mixed_bfloat16: one row each, the efficiency against the matmul rate of the policy's
           compute dtype, and the speed-up over float32). It times a compiled inference call, a
           compiled forward + backward pass ("gradients") and a compiled training step (with
           the Adam update, whose element-wise work is not in the FLOP count), counts the matmul
           FLOPs analytically (zoo_flops.py) and divides the time a perfect matmul engine would
           need by the measured time: efficiency 1.0 = as fast as the matmuls alone. Times are
           the best of --steps calls after a warm-up; the matmul rate is measured right before
           and after each timing and the higher one used; a second efficiency uses process CPU
           seconds for both (the one to read on a shared machine). The report says whether the
           CPU has native bfloat16 (the avx512_bf16 / amx_bf16 flags): without it bfloat16 is
           emulated and its slowdown says nothing about bfloat16 hardware.
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
import os

from absl import app, flags

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

import frame_level_models
import training_runs
import zoo_bucketing
import zoo_flops
import zoo_quality
from frame_level_models import hparams as hparams_lib
from yt8m.core import files
from yt8m.data import bucketing
from yt8m.training import mixed_precision

PARTS = ("speed", "quality", "bucketing")
flags.DEFINE_list("parts", list(PARTS), f"Parts to run: {', '.join(PARTS)}.")
# speed
flags.DEFINE_list("models", ["NeXtVLADModel"], "speed: models to time (NeXtVLADModel, "
                  "NetVLADModelLF).")
flags.DEFINE_integer("batch_size", 80, "speed and bucketing: videos per batch (NeXtVLAD paper: "
                     "80).")
flags.DEFINE_integer("frames", 300, "speed: frames per video, all valid; bucketing: max_frames.")
flags.DEFINE_integer("num_classes", 3862, "speed and bucketing: vocabulary size of the model.")
flags.DEFINE_integer("steps", 3, "speed: timed calls per measurement (the best one is reported).")
flags.DEFINE_enum("optimizer", "fused_adam", ["fused_adam", "adam"],
                  "speed: fused_adam: keras.optimizers.legacy.Adam (one fused kernel per "
                  "variable); adam: keras.optimizers.Adam (several element-wise ops per "
                  "variable, ~3x the time).")
flags.DEFINE_integer("inter_op_threads", 0,
                     "TF inter-op threads (0: TF's default). 1 keeps two large matmuls from "
                     "running at once and oversubscribing the cores.")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square matmul that measures the rate.")
flags.DEFINE_list("speed_precisions", ["float32", "mixed_bfloat16"],
                  "speed: --mixed_precision policies to time (float32 first: the speed-ups are "
                  "against it).")
flags.DEFINE_bool("speed_jit_compile", False, "speed: also time every policy with the "
                  "functions compiled by XLA (train.py's --jit_compile), beside the plain ones.")
# quality
flags.DEFINE_integer("quality_videos", 3000, "quality: synthetic videos (80% train).")
flags.DEFINE_integer("quality_classes", 60, "quality: vocabulary size.")
flags.DEFINE_integer("quality_epochs", 5, "quality: epochs of every model.")
flags.DEFINE_integer("quality_batch_size", 64, "quality: training batch size.")
flags.DEFINE_float("frame_learning_rate", 1e-3, "quality: Adam learning rate, frame level.")
flags.DEFINE_float("video_learning_rate", 1e-2, "quality: Adam learning rate, video level.")
flags.DEFINE_integer("train_frames", 48, "quality: random frames per training video.")
flags.DEFINE_float("bn_momentum", 0.9, "quality: batch-norm momentum. The runs are a few hundred "
                   "steps: at 0.99 the moving variances still carry ~8% of their initial 1.0 after "
                   "250 steps, far above NetVLAD's ~1e-3 activation variance (validation GAP 0.11 "
                   "with moving statistics vs 0.56 with batch statistics, measured).")
flags.DEFINE_list("quality_models", [], "quality: only these models (default: the whole zoo).")
flags.DEFINE_bool("reuse", True, "quality: keep results of runs done with the same settings.")
flags.DEFINE_list("quality_precisions", ["float32"], "quality: train every model under each of "
                  "these --mixed_precision policies (float32, mixed_bfloat16, mixed_float16).")
# bucketing
flags.DEFINE_integer("bucketing_videos", 480, "bucketing: synthetic videos of 60-300 frames.")
flags.DEFINE_list("frame_buckets", ["100", "140", "180", "220", "260", "300"],
                  "bucketing: bucket upper bounds in frames.")
flags.DEFINE_integer("bucketing_passes", 3, "bucketing: timed passes per mode (modes alternate; "
                     "the fastest pass of each is reported).")
flags.DEFINE_integer("seed", 0, "Generator and training seed.")
flags.DEFINE_string("output_dir", os.path.join(os.path.dirname(__file__), "output"),
                    "Where the results go.")
FLAGS = flags.FLAGS


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


def time_model(name, batch, frames, classes, steps, precision="float32", jit_compile=False):
    hp = {h: hparams_lib.default_value(name, h) for h in frame_level_models.hparam_names(name)}
    with mixed_precision.policy_scope(precision):
        model = frame_level_models.build(name, classes)
    compute_dtype = keras.mixed_precision.Policy(precision).compute_dtype
    inputs = {"rgb": tf.random.normal([batch, frames, zoo_flops.RGB]),
              "audio": tf.random.normal([batch, frames, zoo_flops.AUDIO]),
              "num_frames": tf.fill([batch], frames)}
    labels = tf.cast(tf.random.uniform([batch, classes]) < 0.01, tf.float32)
    optimizer = (keras.optimizers.legacy.Adam(2e-4) if FLAGS.optimizer == "fused_adam"
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
        before = zoo_flops.matmul_rates(FLAGS.matmul_size, dtype=compute_dtype)
        seconds, median, cpu_seconds = zoo_flops.best_seconds(function, steps)
        after = zoo_flops.matmul_rates(FLAGS.matmul_size, dtype=compute_dtype)
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
              f"batch, {r['gflop']:.1f} GFLOP, "
              f"{r['model_gflops']:.1f} GFLOP/s vs {compute_dtype} matmul "
              f"{r['matmul_gflops']:.1f} GFLOP/s -> "
              f"efficiency {r['efficiency']:.2f} (per CPU second: {r['cpu_efficiency']:.2f}); "
              f"counting 3x forward FLOPs: {r['efficiency_3x_forward']:.2f} "
              f"({r['cpu_efficiency_3x_forward']:.2f})", flush=True)
    return results


def _figure(*args, **kwargs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


def _save(figure, path):
    figure.tight_layout()
    with files.atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    figure.clf()
    print("wrote", path)


def _write_json(report, path):
    files.write_json_atomically(path, report)
    print("wrote", path)


def run_speed(output_dir):
    unknown = [name for name in FLAGS.models if name not in zoo_flops.MATMULS]
    if unknown:
        raise app.UsageError(f"--models: no FLOP count for {unknown}; choose from "
                             f"{', '.join(zoo_flops.MATMULS)}")
    for precision in FLAGS.speed_precisions:
        mixed_precision.check_policy(precision, "--speed_precisions")
    bfloat16_flags = cpu_bfloat16_flags()
    report = {"optimizer": FLAGS.optimizer, "inter_op_threads": FLAGS.inter_op_threads,
              "batch_size": FLAGS.batch_size, "frames": FLAGS.frames,
              "num_classes": FLAGS.num_classes, "cpu_count": os.cpu_count(),
              "tensorflow": tf.__version__,
              "cpu_bfloat16_flags": bfloat16_flags, "models": {}}
    if not bfloat16_flags and any("bfloat16" in p for p in FLAGS.speed_precisions):
        print("Note: this CPU has no native bfloat16 (no avx512_bf16 / amx_bf16 flag): its "
              "bfloat16 matmuls are emulated, so a mixed_bfloat16 slowdown here is no finding "
              "about bfloat16 hardware.", flush=True)
    modes = ("inference", "gradients", "training")
    for name in FLAGS.models:
        for precision in FLAGS.speed_precisions:
            for jit_compile in (False, True) if FLAGS.speed_jit_compile else (False,):
                row = " ".join([name] + [precision] * (precision != "float32")
                               + ["XLA"] * jit_compile)
                report["models"][row] = dict(
                    precision=precision, jit_compile=jit_compile,
                    **time_model(name, FLAGS.batch_size, FLAGS.frames, FLAGS.num_classes,
                                 FLAGS.steps, precision, jit_compile))
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
    figure, axis = _figure(figsize=(4 + 3 * len(names), 4))
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


def run_quality(output_dir):
    rows = zoo_quality.run(
        os.path.join(output_dir, "zoo_quality"), num_videos=FLAGS.quality_videos,
        num_classes=FLAGS.quality_classes, epochs=FLAGS.quality_epochs,
        batch_size=FLAGS.quality_batch_size, frame_learning_rate=FLAGS.frame_learning_rate,
        video_learning_rate=FLAGS.video_learning_rate, train_frames=FLAGS.train_frames,
        bn_momentum=FLAGS.bn_momentum, seed=FLAGS.seed, models=FLAGS.quality_models,
        reuse=FLAGS.reuse, precisions=FLAGS.quality_precisions)
    _write_json({"rows": rows}, os.path.join(output_dir, "zoo_quality.json"))
    table = zoo_quality.table(rows) + (
        f"\n{FLAGS.quality_videos} synthetic videos (80% train, 20% validate), "
        f"{FLAGS.quality_classes} classes, 60-360 frames (models keep 300); "
        f"{FLAGS.quality_epochs} epochs, batch {FLAGS.quality_batch_size}, Adam "
        f"{FLAGS.frame_learning_rate:g} (frame) / {FLAGS.video_learning_rate:g} (video), "
        f"{FLAGS.train_frames} random training frames, BN momentum {FLAGS.bn_momentum}, "
        f"seed {FLAGS.seed}.\n")
    files.write_text_atomically(os.path.join(output_dir, "zoo_quality.md"), table)
    print(table)
    figure, axes = _figure(1, 2, figsize=(12, 0.6 * len(rows) + 1.5))
    zoo_quality.plot(rows, axes)
    figure.suptitle(f"Model zoo, same budget ({FLAGS.quality_epochs} epochs) on synthetic "
                    "YouTube-8M (bench/model_zoo.py --parts=quality)", fontsize=10)
    _save(figure, os.path.join(output_dir, "zoo_quality.png"))


def run_bucketing(output_dir):
    boundaries = bucketing.parse_boundaries(FLAGS.frame_buckets, FLAGS.frames)
    data_dir = zoo_bucketing_data(output_dir)
    report = zoo_bucketing.run(data_dir, "NeXtVLADModel", FLAGS.batch_size, FLAGS.frames,
                               FLAGS.num_classes, boundaries, FLAGS.matmul_size,
                               FLAGS.bucketing_passes)
    _write_json(report, os.path.join(output_dir, "zoo_bucketing.json"))
    figure, axis = _figure(figsize=(7, 4.5))
    zoo_bucketing.plot(report, axis)
    _save(figure, os.path.join(output_dir, "zoo_bucketing.png"))


def zoo_bucketing_data(output_dir):
    return training_runs.synthetic_data(
        os.path.join(output_dir, "zoo_bucketing"), num_videos=FLAGS.bucketing_videos,
        num_classes=60, min_frames=60, max_frames=FLAGS.frames, seed=FLAGS.seed,
        validate_fraction=0.0, test_fraction=0.0, num_segment_videos=0, num_shards=2)


def main(argv):
    del argv
    unknown = [part for part in FLAGS.parts if part not in PARTS]
    if unknown:
        raise app.UsageError(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    runners = {"speed": run_speed, "quality": run_quality, "bucketing": run_bucketing}
    for part in PARTS:
        if part in FLAGS.parts:
            runners[part](FLAGS.output_dir)


if __name__ == "__main__":
    app.run(main)
