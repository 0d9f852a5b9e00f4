"""Model-zoo speed against this machine's float32 matmul rate.

For each model (default: NeXtVLADModel in the paper configuration, batch 80 x 300 frames) it times
a compiled inference call, a compiled forward + backward pass ("gradients") and a compiled training
step (forward, backward and the Adam update, whose element-wise work is not in the FLOP count). It
counts the matmul FLOPs of that work analytically and divides the time a perfect matmul engine
would need (FLOPs / measured matmul rate) by the measured time: efficiency 1.0 means the model runs
as fast as its matmuls alone would at the machine's large-matmul rate.

    .venv/bin/python bench/model_zoo.py                       # NeXtVLADModel, batch 80 x 300
    .venv/bin/python bench/model_zoo.py --models=NeXtVLADModel,NetVLADModelLF --steps=3

Writes bench/output/model_zoo.json and bench/output/model_zoo.png. Times are the best of --steps
calls (after a warm-up call), for the model and for the matmul alike; the matmul rate is measured
right before and after each model timing and the higher one used. A second efficiency uses process
CPU seconds instead of wall seconds for both: on a shared, oversubscribed machine it is the one to
read (wall-clock ratios then mostly measure the other processes). Numbers are indicative.
"""
import json
import os
import statistics
import time

from absl import app, flags

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

import frame_level_models
from frame_level_models import hparams as hparams_lib

flags.DEFINE_list("models", ["NeXtVLADModel"], "Models to time (NeXtVLADModel, NetVLADModelLF).")
flags.DEFINE_integer("batch_size", 80, "Videos per batch (NeXtVLAD paper: 80).")
flags.DEFINE_integer("frames", 300, "Frames per video, all valid.")
flags.DEFINE_integer("num_classes", 3862, "Vocabulary size.")
flags.DEFINE_integer("steps", 3, "Timed calls per measurement (the best one is reported).")
flags.DEFINE_enum("optimizer", "fused_adam", ["fused_adam", "adam"],
                  "fused_adam: keras.optimizers.legacy.Adam (one fused kernel per variable); adam: "
                  "keras.optimizers.Adam (several element-wise ops per variable, ~3x the time).")
flags.DEFINE_integer("inter_op_threads", 0,
                     "TF inter-op threads (0: TF's default). 1 keeps two large matmuls from "
                     "running at once and oversubscribing the cores.")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square matmul that measures the rate.")
flags.DEFINE_string("output_dir", os.path.join(os.path.dirname(__file__), "output"),
                    "Where model_zoo.json and model_zoo.png go.")
FLAGS = flags.FLAGS

RGB, AUDIO = 1024, 128


def stream_shares(value):
    """rgb gets `value`, audio value // 2 (model_parts.stream_share)."""
    return value, max(value // 2, 1)


def nextvlad_matmuls(batch, frames, classes, hp):
    """(m, k, n, input_is_data) of every matmul of one NeXtVLADModel forward pass."""
    rows = batch * frames
    shapes, vlad_dim = [], 0
    for size, clusters, groups in zip((RGB, AUDIO), stream_shares(hp["nextvlad_cluster_size"]),
                                      stream_shares(hp["groups"])):
        wide = hp["expansion"] * size
        width = wide // groups
        shapes += [(rows, size, wide, True),               # expansion (input = data)
                   (rows, wide, groups, False),            # group attention
                   (rows, wide, groups * clusters, False),  # cluster assignment
                   (batch * width, frames * groups, clusters, False)]  # residual sums, per video
        vlad_dim += width * clusters
    hidden, reduced = hp["nextvlad_hidden_size"], hp["nextvlad_hidden_size"] // hp[
        "gating_reduction"]
    shapes += [(batch, vlad_dim, hidden, False), (batch, hidden, reduced, False),
               (batch, reduced, hidden, False), (batch, hidden, classes, False)]
    return shapes


def netvlad_matmuls(batch, frames, classes, hp):
    rows = batch * frames
    shapes, vlad_dim = [], 0
    for size, clusters in zip((RGB, AUDIO), stream_shares(hp["netvlad_cluster_size"])):
        shapes += [(rows, size, clusters, False),  # input BN has parameters: its input grad runs
                   (batch * size, frames, clusters, False)]
        vlad_dim += size * clusters
    hidden, mixtures = hp["netvlad_hidden_size"], hp["moe_num_mixtures"]
    shapes += [(batch, vlad_dim, hidden, False), (batch, hidden, hidden, False),
               (batch, hidden, classes * (mixtures + 1), False),
               (batch, hidden, classes * mixtures, False), (batch, classes, classes, False)]
    return shapes


MATMULS = {"NeXtVLADModel": nextvlad_matmuls, "NetVLADModelLF": netvlad_matmuls}


def flops(shapes, training):
    """Forward: 2mkn per matmul. Training adds the weight gradient (2mkn) and the input gradient
    (2mkn) except where the input is the data, which needs no gradient."""
    total = 0
    for m, k, n, input_is_data in shapes:
        total += 2 * m * k * n
        if training:
            total += 2 * m * k * n * (1 if input_is_data else 2)
    return total


def best_seconds(function, steps):
    """(best wall seconds, median wall seconds, best process CPU seconds) of `steps` calls."""
    function()  # compile / warm up
    walls, cpus = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return min(walls), statistics.median(walls), min(cpus)


def matmul_rates(size, steps=5):
    """float32 FLOP/s of a size^3 matmul: per wall second and per process CPU second."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    product = tf.function(lambda: tf.matmul(a, b))
    wall, _, cpu = best_seconds(lambda: product().numpy(), steps)
    return 2 * size ** 3 / wall, 2 * size ** 3 / cpu


def time_model(name, batch, frames, classes, steps):
    hp = {h: hparams_lib.default_value(name, h) for h in frame_level_models.hparam_names(name)}
    model = frame_level_models.build(name, classes)
    inputs = {"rgb": tf.random.normal([batch, frames, RGB]),
              "audio": tf.random.normal([batch, frames, AUDIO]),
              "num_frames": tf.fill([batch], frames)}
    labels = tf.cast(tf.random.uniform([batch, classes]) < 0.01, tf.float32)
    optimizer = (keras.optimizers.legacy.Adam(2e-4) if FLAGS.optimizer == "fused_adam"
                 else keras.optimizers.Adam(2e-4))

    @tf.function
    def infer():
        return model(inputs, training=False)["predictions"]

    def loss_and_gradients():
        with tf.GradientTape() as tape:
            predictions = model(inputs, training=True)["predictions"]
            loss = tf.reduce_mean(tf.reduce_sum(
                keras.backend.binary_crossentropy(labels, predictions), axis=1))
        return loss, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def gradients_only():
        loss, gradients = loss_and_gradients()
        # Consume every gradient cheaply so none is pruned from the graph.
        return loss + tf.add_n([gradient[0, ...] if gradient.shape.rank == 1 else
                                gradient[0, 0] for gradient in gradients]) * 0.0

    @tf.function
    def train_step():
        loss, gradients = loss_and_gradients()
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    results = {"params": model.count_params()}
    shapes = MATMULS[name](batch, frames, classes, hp)
    for mode, function in (("inference", lambda: infer().numpy()),
                           ("gradients", lambda: gradients_only().numpy()),
                           ("training", lambda: train_step().numpy())):
        before = matmul_rates(FLAGS.matmul_size)
        seconds, median, cpu_seconds = best_seconds(function, steps)
        after = matmul_rates(FLAGS.matmul_size)
        rate, cpu_rate = max(before[0], after[0]), max(before[1], after[1])
        work = flops(shapes, mode != "inference")
        results[mode] = {"seconds": seconds, "median_seconds": median, "cpu_seconds": cpu_seconds,
                         "gflop": work / 1e9, "matmul_gflops": rate / 1e9,
                         "model_gflops": work / seconds / 1e9,
                         "efficiency": work / rate / seconds,
                         "cpu_efficiency": work / cpu_rate / cpu_seconds}
        print(f"{name} {mode}: {seconds:.3f} s per batch, {work / 1e9:.1f} GFLOP, "
              f"{work / seconds / 1e9:.1f} GFLOP/s vs matmul {rate / 1e9:.1f} GFLOP/s -> "
              f"efficiency {work / rate / seconds:.2f} (per CPU second: "
              f"{work / cpu_rate / cpu_seconds:.2f})", flush=True)
    return results


def write_outputs(report, output_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "model_zoo.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(path + ".tmp", path)

    # CPU-time efficiencies only: on this shared machine the wall-clock ones (in the JSON) swing
    # with the other processes, the CPU-time ones stay put.
    names = list(report["models"])
    figure, axis = plt.subplots(figsize=(3 + 2.5 * len(names), 4))
    modes = ("inference", "gradients", "training")
    width = 0.25
    for index, mode in enumerate(modes):
        values = [report["models"][name][mode]["cpu_efficiency"] for name in names]
        bars = axis.bar([i + (index - 1) * width for i in range(len(names))], values, width,
                        label=mode)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
    axis.axhline(0.85, color="gray", linestyle="--", linewidth=1, label="target 0.85")
    axis.set_xticks(range(len(names)), names)
    axis.set_ylabel("matmul-FLOP CPU time / measured CPU time")
    axis.set_title(f"batch {report['batch_size']} x {report['frames']} frames, "
                   f"{report['cpu_count']} CPUs, {report['optimizer']}")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    png = os.path.join(output_dir, "model_zoo.png")
    figure.savefig(png + ".tmp.png", dpi=100)
    os.replace(png + ".tmp.png", png)
    plt.close(figure)
    return path, png


def main(argv):
    del argv
    unknown = [name for name in FLAGS.models if name not in MATMULS]
    if unknown:
        raise app.UsageError(f"--models: no FLOP count for {unknown}; choose from "
                             f"{', '.join(MATMULS)}")
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    report = {"optimizer": FLAGS.optimizer, "inter_op_threads": FLAGS.inter_op_threads,
              "batch_size": FLAGS.batch_size, "frames": FLAGS.frames,
              "num_classes": FLAGS.num_classes, "cpu_count": os.cpu_count(),
              "tensorflow": tf.__version__, "models": {}}
    for name in FLAGS.models:
        report["models"][name] = time_model(name, FLAGS.batch_size, FLAGS.frames,
                                            FLAGS.num_classes, FLAGS.steps)
    for path in write_outputs(report, FLAGS.output_dir):
        print("wrote", path)


if __name__ == "__main__":
    app.run(main)
