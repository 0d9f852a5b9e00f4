"""Input pipeline throughput: the frame reader beside the raw bytes of the same files.

    python bench/input_pipeline.py                      # writes temporary shards, then measures
    python bench/input_pipeline.py --data_dir=/tmp/yt8m_bench --num_videos=4000

Shards: `<data_dir>/frame/train*.tfrecord` are reused when present; otherwise they are written
there by `yt8m.synthetic.generate`. Videos have 60-300 frames, rgb + audio and labels.

Measured, each over whole passes of the files after one warm-up pass:
  raw      tf.data.TFRecordDataset over the files, batched (bytes only, nothing parsed)
  uint8    yt8m.data.frame_dataset(dequantize=False): uint8 [B, 300, size] codes
  float32  yt8m.data.frame_dataset(): dequantized float32 [B, 300, size]
Reported: examples/s (wall clock, best pass and median) and the process CPU time per example,
which moves less than the wall clock when other jobs share the machine; "CPU-bound ceiling" =
cores / CPU seconds per example, the rate if the pipeline had every core to itself (an estimate).
Writes <output>.json, <output>.md and <output>.png (bar chart against the targets).
"""
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Optional

import numpy as np
from absl import app, logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

import bench_options
import figures
from yt8m import data, synthetic
from yt8m.core import files
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.data import records
from yt8m.synthetic import Config as SyntheticConfig



@dataclasses.dataclass
class Options(bench_options.Timing):
    data_dir: Optional[str] = option(
        None, "Directory with frame/train*.tfrecord shards (written there when missing). "
        "Default: a temporary directory, deleted afterwards.")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 2000,
                               help="Videos to write when shards are missing.")
    num_shards: int = override(SyntheticConfig, "num_shards", 8, lower=1,
                               help="Shards to write when shards are missing.")
    batch_size: int = override(bench_options.Optimization, "batch_size", 80,
                               help="Batch size of the readers.")
    num_parallel_reads: Optional[int] = option(
        None, "Files read in parallel (default: reader's).", lower=1)
    variants: tuple[str, ...] = option(("raw", "uint8", "float32"), "What to measure.")
    output: str = option("bench/output/input_pipeline",
                         "Output path without extension: writes .json and .md.")


options.define_flags(Options)

MIN_FRAMES, MAX_FRAMES = 60, 300
NUM_CLASSES = records.DEFAULT_NUM_CLASSES
TARGETS = {"float32": 6000, "uint8": 12000}  # examples/s asked for on the 2-core machine


def _write_shards(data_dir, num_videos, num_shards):
    synthetic.generate(data_dir, num_videos=num_videos, num_shards=num_shards,
                       min_frames=MIN_FRAMES, max_frames=MAX_FRAMES, validate_fraction=0.0,
                       test_fraction=0.0, num_segment_videos=0,
                       num_classes=min(NUM_CLASSES, 1000), num_workers=os.cpu_count() or 1)


def _datasets(pattern, batch_size, num_parallel_reads):
    files = data.list_files(pattern)
    readers = num_parallel_reads or min(len(files), 8)

    def raw():
        return (tf.data.TFRecordDataset(files, num_parallel_reads=readers, buffer_size=4 << 20)
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def frames(dequantize):
        return lambda: data.frame_dataset(pattern, batch_size, num_classes=NUM_CLASSES,
                                          dequantize=dequantize,
                                          num_parallel_reads=num_parallel_reads)
    return {"raw": raw, "uint8": frames(False), "float32": frames(True)}


def _one_pass(dataset):
    """(examples, bytes of the yielded tensors, wall seconds, CPU seconds) of one full pass."""
    examples = nbytes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in dataset:
        if isinstance(batch, dict):
            examples += int(batch["num_frames"].shape[0])
            nbytes += sum(int(np.prod(t.shape)) * t.dtype.size for t in batch.values()
                          if t.dtype != tf.string)
        else:  # raw serialized records
            examples += int(batch.shape[0])
            nbytes += int(tf.reduce_sum(tf.strings.length(batch)))
    return examples, nbytes, time.perf_counter() - wall, time.process_time() - cpu


def measure(make_dataset, passes):
    dataset = make_dataset()
    _one_pass(dataset)  # warm-up: tracing, page cache, autotuning
    runs = [_one_pass(dataset) for _ in range(passes)]
    examples, nbytes = runs[0][0], runs[0][1]
    rates = [examples / wall for _, _, wall, _ in runs]
    cpu_seconds = min(cpu for *_, cpu in runs) / examples
    return {"examples": examples, "examples_per_s_best": max(rates),
            "examples_per_s_median": statistics.median(rates),
            "cpu_ms_per_example": cpu_seconds * 1e3,
            "cpu_bound_ceiling_examples_per_s": (os.cpu_count() or 1) / cpu_seconds,
            "output_mb_per_s_best": max(nbytes / wall for _, _, wall, _ in runs) / 1e6}


def markdown_table(results, command):
    lines = [f"`{command}`", "",
             "| pipeline | examples/s (best) | examples/s (median) | CPU ms / example | "
             "CPU-bound ceiling, examples/s | MB/s out | target |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in results.items():
        target = TARGETS.get(name)
        lines.append(f"| {name} | {row['examples_per_s_best']:.0f} | "
                     f"{row['examples_per_s_median']:.0f} | {row['cpu_ms_per_example']:.3f} | "
                     f"{row['cpu_bound_ceiling_examples_per_s']:.0f} | "
                     f"{row['output_mb_per_s_best']:.0f} | {target or ''} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    """Bars: measured examples/s and the CPU-bound ceiling per pipeline; ticks: the targets."""
    names = list(results)
    x = np.arange(len(names))
    figure, axes = figures.subplots(figsize=(6.5, 3.8))
    axes.bar(x - 0.2, [results[n]["examples_per_s_best"] for n in names], 0.4,
             label="measured (best pass, wall clock)")
    axes.bar(x + 0.2, [results[n]["cpu_bound_ceiling_examples_per_s"] for n in names], 0.4,
             label=f"CPU-bound ceiling ({os.cpu_count()} cores / CPU time)")
    for i, name in enumerate(names):
        if name in TARGETS:
            axes.hlines(TARGETS[name], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                        label="target" if name == "float32" else None)
    axes.set_xticks(x, names)
    axes.set_ylabel("examples / s")
    axes.set_title("Frame reader throughput (batch of 80, 60-300 frames)")
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    figures.save_png(figure, path)


def main(argv):
    del argv
    opts = options.from_flags(Options)
    unknown = sorted(set(opts.variants) - {"raw", "uint8", "float32"})
    if unknown:
        raise app.UsageError(f"--variants: unknown {unknown}; use raw, uint8, float32")
    data_dir = opts.data_dir or tempfile.mkdtemp(prefix="yt8m_bench_")
    try:
        pattern = os.path.join(data_dir, "frame", "train*.tfrecord")
        source = "existing shards"
        if not tf.io.gfile.glob(pattern):
            started = time.perf_counter()
            _write_shards(data_dir, opts.num_videos, opts.num_shards)
            source = "yt8m.synthetic.generate"
            logging.info("wrote shards in %.0f s (%s)", time.perf_counter() - started, source)
        datasets = _datasets(pattern, opts.batch_size, opts.num_parallel_reads)
        results = {}
        for name in opts.variants:
            results[name] = measure(datasets[name], opts.passes)
            logging.info("%s: %s", name, results[name])
        shard_bytes = sum(tf.io.gfile.stat(f).length for f in data.list_files(pattern))
    finally:
        if opts.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)

    command = " ".join(["python bench/input_pipeline.py"] + sys.argv[1:])
    table = markdown_table(results, command)
    info = (f"{results[next(iter(results))]['examples']} videos, {shard_bytes / 1e6:.0f} MB of "
            f"shards ({source}), {os.cpu_count()} CPU cores, batch {opts.batch_size}\n")
    print(info + table)
    files.write_text_atomically(opts.output + ".md", info + "\n" + table)
    plot(results, opts.output + ".png")
    files.write_text_atomically(opts.output + ".json", json.dumps(
        {"command": command, "shards": source, "shard_bytes": shard_bytes,
         "cpu_count": os.cpu_count(), "batch_size": opts.batch_size, "results": results},
        indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
