"""Analytic matmul FLOPs of the zoo's large models and this machine's float32 matmul rate: what
bench/model_zoo.py divides by to get an efficiency (1.0 = as fast as the matmuls alone)."""
import statistics
import time

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

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


def matmul_rates(size, steps=5, dtype=tf.float32):
    """FLOP/s of a size^3 matmul in `dtype` (float32; bfloat16 for the mixed_bfloat16 models):
    per wall second and per process CPU second."""
    a = tf.cast(tf.random.normal([size, size]), dtype)
    b = tf.cast(tf.random.normal([size, size]), dtype)
    product = tf.function(lambda: tf.matmul(a, b))
    wall, _, cpu = best_seconds(lambda: product().numpy(), steps)
    return 2 * size ** 3 / wall, 2 * size ** 3 / cpu
