"""Serving speed of exported SavedModels, measured side by side (bench/export.py,
bench/compression.py).

All exports are loaded together, warmed up, then timed in turn, pass after pass, on the same
batches held in memory (the reader is not measured): a busy spell of the shared machine slows
every export alike instead of one of them.
"""
import dataclasses
import statistics
import time

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.export import serving


@dataclasses.dataclass
class Timing:
    examples_per_second: float     # best pass, wall clock
    slowest_examples_per_second: float  # worst pass (best / worst: the spread)
    cpu_seconds_per_example: float  # median over passes, process CPU time
    load_seconds: float            # tf.saved_model.load (densifies sparse matrices)


def time_exports(export_dirs, batches, passes):
    """{export dir: Timing} of serving_default over `batches` (dicts of rgb, audio,
    num_frames)."""
    count = sum(int(batch["num_frames"].shape[0]) for batch in batches)
    serves, load_seconds = {}, {}
    for export_dir in export_dirs:
        start = time.perf_counter()
        serves[export_dir] = tf.saved_model.load(export_dir).signatures[serving.SERVING_DEFAULT]
        load_seconds[export_dir] = time.perf_counter() - start

    def one_pass(serve):
        for batch in batches:
            serve(rgb=batch["rgb"], audio=batch["audio"], num_frames=batch["num_frames"])

    for serve in serves.values():
        one_pass(serve)  # warm-up
    rates = {export_dir: [] for export_dir in export_dirs}
    cpu = {export_dir: [] for export_dir in export_dirs}
    for _ in range(passes):
        for export_dir, serve in serves.items():
            wall, process = time.perf_counter(), time.process_time()
            one_pass(serve)
            rates[export_dir].append(count / (time.perf_counter() - wall))
            cpu[export_dir].append((time.process_time() - process) / count)
    return {export_dir: Timing(max(rates[export_dir]), min(rates[export_dir]),
                               statistics.median(cpu[export_dir]), load_seconds[export_dir])
            for export_dir in export_dirs}
