"""Input pipeline throughput: the project's frame reader beside a plain, unchecked tf.data reader.

    python bench/input_pipeline.py --data_dir=/tmp/yt8m_bench          # shards written if missing
    python bench/input_pipeline.py --data_dir=/tmp/yt8m_bench --rounds=9 --batch_size=80

Shards: `<data_dir>/frame/train*.tfrecord` are reused when present, else written there by
yt8m.synthetic (--num_videos videos of 60-300 frames, rgb + audio + labels).

Pipelines, measured in the same process and alternating: every round, each pipeline in turn (the
order reversed every other round) reads its files (repeated) through a fresh iterator; after the
first batch and 8 more, one pass (as many batches as the files hold) is timed: steady state, what
a training or evaluation run sees. So a load spike from other jobs hits all of them alike. The
time from creating the iterator to its first batch ("start": tracing the functions, opening the
files) is reported apart:
  read            TFRecordDataset(files) -> batch: bytes only, nothing parsed
  stream          the reader's record stream (yt8m.data.record_stream): + file names + the
                  end-of-file byte check -> batch
  plain uint8     read -> one tf.io.parse_sequence_example per batch -> decode_raw -> pad ->
                  multi-hot labels; no check of any kind (written here, the reference)
  reader uint8    yt8m.data.frame_dataset(dequantize=False)
  plain float32   plain uint8 -> dequantize -> mask (written here)
  reader float32  yt8m.data.frame_dataset()
Both readers read the same files with the same number of parallel reads, read buffer, parallel
batching and parsing, and prefetch. Reported: examples/s (best round, median, min), CPU time per
example (process CPU time, all threads; best round), start time, and reader / plain ratios: of the
best rounds, and the median and range of the per-round ratios (each round's passes ran back to
back, so its ratio is the least disturbed).

Stage costs: each stage alone on --stage_batches batches held in memory with its own inputs
(records, parsed features or decoded codes, so no stage is a difference of two timings), best of
the rounds (order reversed every other round), in CPU microseconds per example, plus the record
stages (read and stream) from the pipeline passes. Writes <output>.json, <output>.md and <output>.png.
"""
import dataclasses
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
from yt8m.data import readers, record_stream, records
from yt8m.synthetic import Config as SyntheticConfig


@dataclasses.dataclass
class Options:
    data_dir: Optional[str] = option(
        None, "Directory with frame/train*.tfrecord shards (written there when missing). "
        "Default: a temporary directory, deleted afterwards.")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 2000,
                               help="Videos to write when shards are missing.")
    num_shards: int = override(SyntheticConfig, "num_shards", 8, lower=1,
                               help="Shards to write when shards are missing.")
    batch_size: int = override(bench_options.Optimization, "batch_size", 80,
                               help="Batch size of every pipeline.")
    rounds: int = option(7, "Timed rounds (each: one pass of every pipeline, alternating).",
                         lower=1)
    stage_batches: int = option(8, "Batches held in memory for the stage costs.", lower=1)
    num_parallel_reads: Optional[int] = option(
        None, "Files read in parallel (default: the reader's own, min(#files, 8)); the plain "
        "reader uses the same number.", lower=1)
    output: str = option("bench/output/input_pipeline",
                         "Output path without extension: writes .json, .md and .png.")


options.define_flags(Options)

MIN_FRAMES, MAX_FRAMES = 60, 300
NUM_CLASSES = records.DEFAULT_NUM_CLASSES
NAMES, SIZES = records.DEFAULT_FEATURE_NAMES, records.DEFAULT_FEATURE_SIZES
AUTOTUNE = tf.data.AUTOTUNE
PIPELINES = ("read", "stream", "plain uint8", "reader uint8", "plain float32", "reader float32")
TARGETS = {"uint8": 0.9, "float32": 1.0}  # reader examples/s / plain reader examples/s


# ----------------------------------------------------------------------------------------------
# The plain reader: what a tf.data reader without any check does.

_CONTEXT = {"id": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "labels": tf.io.VarLenFeature(tf.int64)}
_FRAMES = {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in NAMES}


def plain_parse(serialized):
    return tf.io.parse_sequence_example(serialized, context_features=_CONTEXT,
                                        sequence_features=_FRAMES)


def plain_labels(context):
    return tf.cast(tf.sparse.to_indicator(context["labels"], NUM_CLASSES), tf.float32)


def plain_decode_pad(strings, size):
    codes = tf.io.decode_raw(strings[:, :MAX_FRAMES], tf.uint8, fixed_length=size)
    return tf.pad(codes, [[0, 0], [0, MAX_FRAMES - tf.shape(codes)[1]], [0, 0]])


def plain_dequantize_mask(codes, num_frames):
    valid = tf.sequence_mask(num_frames, MAX_FRAMES)[:, :, None]
    return tf.where(valid, records.dequantize(codes), 0.0)


def plain_batch(serialized, dequantize):
    context, strings, lengths = plain_parse(serialized)
    num_frames = tf.minimum(tf.cast(lengths[NAMES[0]], tf.int32), MAX_FRAMES)
    batch = {"id": context["id"], "num_frames": num_frames, "labels": plain_labels(context)}
    for name, size in zip(NAMES, SIZES):
        codes = plain_decode_pad(strings[name], size)
        batch[name] = plain_dequantize_mask(codes, num_frames) if dequantize else codes
    return batch


# ----------------------------------------------------------------------------------------------
# Pipelines


def pipelines(pattern, batch_size, num_parallel_reads):
    file_list = data.list_files(pattern)
    readers_count = num_parallel_reads or min(len(file_list), 8)

    def batched(records_dataset):
        return records_dataset.batch(batch_size, num_parallel_calls=AUTOTUNE, deterministic=True)

    def read():
        return tf.data.TFRecordDataset(file_list, num_parallel_reads=readers_count,
                                       buffer_size=record_stream._READ_BUFFER_BYTES)

    def plain(dequantize):
        return lambda: (batched(read())
                        .map(lambda serialized: plain_batch(serialized, dequantize),
                             num_parallel_calls=AUTOTUNE, deterministic=True)
                        .prefetch(AUTOTUNE))

    def reader(dequantize):
        return lambda: data.frame_dataset(pattern, batch_size, num_classes=NUM_CLASSES,
                                          dequantize=dequantize,
                                          num_parallel_reads=num_parallel_reads)

    return {"read": lambda: batched(read()).prefetch(AUTOTUNE),
            "stream": lambda: batched(record_stream.named_records(
                file_list, num_parallel_reads=readers_count)).prefetch(AUTOTUNE),
            "plain uint8": plain(False), "reader uint8": reader(False),
            "plain float32": plain(True), "reader float32": reader(True)}


def count(batch):
    return int((batch[0] if isinstance(batch, tuple) else
                batch["id"] if isinstance(batch, dict) else batch).shape[0])


def timed_batches(iterator, num_batches):
    """(examples, wall seconds, CPU seconds) of the next `num_batches` batches."""
    examples = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        examples += count(next(iterator))
    return examples, time.perf_counter() - wall, time.process_time() - cpu


def measure_pipelines(datasets, rounds, num_batches, warm_batches=8):
    """Alternating: every round, each pipeline in turn gets a fresh iterator over its data repeated
    forever; the time from its creation to its first batch is its start (tracing the functions,
    opening the files), then after `warm_batches` more (the pipeline running at full speed) the
    next `num_batches` batches are timed (steady state: what a long training or evaluation run
    sees). Only the pipeline being measured is running."""
    runs = {name: [] for name in datasets}
    for round_index in range(rounds + 1):  # round 0 warms the page cache
        order = list(datasets.items())
        for name, dataset in (order if round_index % 2 else order[::-1]):  # no favoured place
            started = time.perf_counter()
            iterator = iter(dataset.repeat())
            next(iterator)
            startup = time.perf_counter() - started
            for _ in range(warm_batches):
                next(iterator)
            examples, wall, cpu = timed_batches(iterator, num_batches)
            del iterator
            if round_index:
                runs[name].append((examples, examples / wall, 1e6 * cpu / examples, startup))
        if round_index:
            logging.info("round %d: %s", round_index, {
                name: f"{runs[name][-1][1]:.0f}/s" for name in datasets})
    return runs


def summarize(runs):
    results = {}
    for name, passes in runs.items():
        rates = [rate for _, rate, _, _ in passes]
        results[name] = {"examples": passes[0][0], "examples_per_s": rates,
                         "best": max(rates), "median": statistics.median(rates),
                         "min": min(rates),
                         "cpu_us_per_example": min(cpu for _, _, cpu, _ in passes),
                         "startup_s": statistics.median(start for *_, start in passes)}
    ratios = {}
    for kind in ("uint8", "float32"):
        reader, plain = runs.get(f"reader {kind}"), runs.get(f"plain {kind}")
        if reader and plain:
            per_round = [r[1] / p[1] for r, p in zip(reader, plain)]
            ratios[kind] = {"of_best": results[f"reader {kind}"]["best"]
                            / results[f"plain {kind}"]["best"],
                            "per_round_median": statistics.median(per_round),
                            "per_round_min": min(per_round), "per_round_max": max(per_round),
                            "cpu": results[f"plain {kind}"]["cpu_us_per_example"]
                            / results[f"reader {kind}"]["cpu_us_per_example"],
                            "target": TARGETS[kind]}
    return results, ratios


# ----------------------------------------------------------------------------------------------
# Stage costs: each piece alone on batches held in memory.


def stage_functions():
    """name -> function of one in-memory batch (its records, file names, and their parsed and
    decoded forms, so that each stage runs alone on its own inputs). The reader's pieces are its
    own functions (yt8m.data.readers), called as its parse step calls them."""
    reader_parser = readers._FrameParser(NUM_CLASSES, NAMES, SIZES)
    reader_uint8 = readers.frame_batch_parser(NUM_CLASSES, MAX_FRAMES, dequantize=False)
    reader_float32 = readers.frame_batch_parser(NUM_CLASSES, MAX_FRAMES, dequantize=True)

    def reader_parse(batch):
        return tf.io.parse_sequence_example(
            batch["serialized"], context_features=reader_parser.context_features,
            sequence_features=reader_parser.sequence_features, example_names=batch["filenames"])

    def reader_labels_and_checks(batch):
        filenames, context = batch["filenames"], batch["context"]
        video_ids, id_check = readers._video_ids(context, filenames)
        labels, label_check = readers._multi_hot(context["labels"], NUM_CLASSES, filenames,
                                                 video_ids)
        return [video_ids, labels, id_check, label_check] + readers._check_frames(
            batch["strings"], batch["lengths"], NAMES, SIZES, filenames, video_ids)

    def each_feature(function):
        return lambda batch: [function(batch, name, size) for name, size in zip(NAMES, SIZES)]

    return {
        "plain parse": lambda batch: plain_parse(batch["serialized"]),
        "reader parse": reader_parse,
        "plain labels": lambda batch: plain_labels(batch["context"]),
        "reader labels and checks": reader_labels_and_checks,
        "plain decode": each_feature(
            lambda batch, name, size: plain_decode_pad(batch["strings"][name], size)),
        "reader decode": each_feature(
            lambda batch, name, size: readers._fixed_frames(batch["strings"][name], size,
                                                            MAX_FRAMES)),
        "plain dequantize": each_feature(
            lambda batch, name, _: plain_dequantize_mask(batch["codes"][name],
                                                         batch["num_frames"])),
        "reader dequantize": each_feature(
            lambda batch, name, _: readers._dequantize_padded_fused(batch["codes"][name],
                                                                    batch["num_frames"])),
        "plain step uint8": lambda batch: plain_batch(batch["serialized"], False),
        "reader step uint8": lambda batch: reader_uint8(batch["filenames"], batch["serialized"]),
        "plain step float32": lambda batch: plain_batch(batch["serialized"], True),
        "reader step float32": lambda batch: reader_float32(batch["filenames"],
                                                            batch["serialized"]),
    }


def in_memory_batches(pattern, batch_size, num_batches):
    """`num_batches` batches of records with their file names, parsed (the reader's features),
    and decoded: the inputs of every stage, computed once."""
    parser = readers._FrameParser(NUM_CLASSES, NAMES, SIZES)
    stream = record_stream.named_records(data.list_files(pattern))
    batches = []
    for filenames, serialized in stream.batch(batch_size, drop_remainder=True).take(num_batches):
        context, strings, lengths = tf.io.parse_sequence_example(
            serialized, context_features=parser.context_features,
            sequence_features=parser.sequence_features, example_names=filenames)
        num_frames = tf.minimum(tf.cast(lengths[NAMES[0]], tf.int32), MAX_FRAMES)
        batches.append({"filenames": filenames, "serialized": serialized, "context": context,
                        "strings": strings, "lengths": lengths, "num_frames": num_frames,
                        "codes": {name: plain_decode_pad(strings[name], size)
                                  for name, size in zip(NAMES, SIZES)}})
    return batches


def measure_stages(pattern, batch_size, num_batches, rounds):
    """CPU microseconds per example of each stage function (best of `rounds`; the order is
    reversed every other round)."""
    batches = in_memory_batches(pattern, batch_size, num_batches)
    examples = batch_size * len(batches)

    def completed(function):
        """The function returning all its outputs, so that no op can be pruned. They are not
        copied out of TensorFlow (`.numpy()` copies, which would cost more than some stages):
        on CPU the call returns once they are computed."""
        return tf.function(
            lambda batch: tf.nest.flatten(function(batch), expand_composites=True))

    functions = {name: completed(function) for name, function in stage_functions().items()}

    def run(function):
        cpu = time.process_time()
        for batch in batches:
            function(batch)
        return 1e6 * (time.process_time() - cpu) / examples

    for function in functions.values():
        run(function)  # tracing and compilation
    costs = {name: [] for name in functions}
    order = list(functions.items())
    for round_index in range(rounds):
        for name, function in (order if round_index % 2 else order[::-1]):  # no favoured place
            costs[name].append(run(function))
    return {name: min(values) for name, values in costs.items()}


def stage_table(stages, results):
    """(stage, plain reader, project reader) in CPU us / example, each measured on its own."""
    def cpu(name):
        return results[name]["cpu_us_per_example"]

    def both(stage):
        return stages[f"plain {stage}"], stages[f"reader {stage}"]

    return [
        ("records to batches: TFRecordDataset(files) / the reader's stream (+ file names, "
         "end-of-file byte check)", cpu("read"), cpu("stream")),
        ("tf.io.parse_sequence_example (the reader: + video_id, file names)", *both("parse")),
        ("multi-hot labels (the reader: + ids, label range, frame sizes, frame counts checks)",
         stages["plain labels"], stages["reader labels and checks"]),
        ("decode_raw + pad to max_frames", *both("decode")),
        ("dequantize + mask, float32 only (the reader: XLA-fused)", *both("dequantize")),
        ("whole parse step, uint8 (in memory)", *both("step uint8")),
        ("whole parse step, float32 (in memory)", *both("step float32")),
        ("whole pipeline, uint8 (CPU per example)", cpu("plain uint8"), cpu("reader uint8")),
        ("whole pipeline, float32 (CPU per example)", cpu("plain float32"),
         cpu("reader float32")),
    ]


# ----------------------------------------------------------------------------------------------
# Report


def markdown(results, ratios, rows, command, info):
    lines = [f"`{command}`", "", info, "",
             "| pipeline | examples/s, best round | median | min | CPU us / example | "
             "start: iterator to first batch (median) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['best']:.0f} | {row['median']:.0f} | {row['min']:.0f} | "
                     f"{row['cpu_us_per_example']:.0f} | {1e3 * row['startup_s']:.0f} ms |")
    lines += ["", "| reader / plain | of the best rounds | per round: median (min-max) | "
              "of CPU time | target |", "| --- | ---: | ---: | ---: | ---: |"]
    for kind, ratio in ratios.items():
        lines.append(f"| {kind} | {ratio['of_best']:.2f} | {ratio['per_round_median']:.2f} "
                     f"({ratio['per_round_min']:.2f}-{ratio['per_round_max']:.2f}) | "
                     f"{ratio['cpu']:.2f} | >= {ratio['target']} |")
    lines += ["", "| stage (CPU us / example) | plain reader | project reader |",
              "| --- | ---: | ---: |"]
    for name, plain, reader in rows:
        lines.append(f"| {name} | {'-' if plain is None else f'{plain:.0f}'} | "
                     f"{'-' if reader is None else f'{reader:.0f}'} |")
    return "\n".join(lines) + "\n"


def plot(results, batch_size, path):
    """Bars: the median round; whiskers: the worst and the best round."""
    names = list(results)
    x = np.arange(len(names))
    median = np.array([results[n]["median"] for n in names])
    spread = [median - np.array([results[n]["min"] for n in names]),
              np.array([results[n]["best"] for n in names]) - median]
    figure, axes = figures.subplots(figsize=(7.5, 3.8))
    axes.bar(x, median, 0.6, yerr=spread, capsize=4,
             color=["#999999", "#999999", "#4c72b0", "#dd8452", "#4c72b0", "#dd8452"][:len(x)])
    axes.set_xticks(x, names, fontsize=8)
    axes.set_ylabel("examples / s (median round;\nwhiskers: worst and best)")
    axes.set_title(f"Frame readers, batch {batch_size}, {MIN_FRAMES}-{MAX_FRAMES} frames")
    figures.save_png(figure, path)


def main(argv):
    del argv
    opts = options.from_flags(Options)
    data_dir = opts.data_dir or tempfile.mkdtemp(prefix="yt8m_bench_")
    try:
        pattern = os.path.join(data_dir, "frame", "train*.tfrecord")
        if not tf.io.gfile.glob(pattern):
            synthetic.generate(data_dir, num_videos=opts.num_videos, num_shards=opts.num_shards,
                               min_frames=MIN_FRAMES, max_frames=MAX_FRAMES,
                               validate_fraction=0.0, test_fraction=0.0, num_segment_videos=0,
                               num_classes=1000, num_workers=os.cpu_count() or 1)
        datasets = {name: make() for name, make in pipelines(
            pattern, opts.batch_size, opts.num_parallel_reads).items()}
        num_files = len(data.list_files(pattern))
        num_videos = sum(1 for _ in tf.data.TFRecordDataset(data.list_files(pattern)))
        num_batches = -(-num_videos // opts.batch_size)  # one pass a round
        results, ratios = summarize(measure_pipelines(datasets, opts.rounds, num_batches))
        stages = measure_stages(pattern, opts.batch_size, opts.stage_batches, opts.rounds)
        shard_bytes = sum(tf.io.gfile.stat(f).length for f in data.list_files(pattern))
    finally:
        if opts.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)

    rows = stage_table(stages, results)
    command = " ".join(["python bench/input_pipeline.py"] + sys.argv[1:])
    load = os.getloadavg()
    info = (f"{num_videos} videos in {num_files} shards ({shard_bytes / 1e6:.0f} MB), batch "
            f"{opts.batch_size}, {os.cpu_count()} CPU cores, {opts.rounds} rounds of "
            f"{results['read']['examples']} examples per pipeline; "
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    text = markdown(results, ratios, rows, command, info)
    print(text)
    files.write_text_atomically(opts.output + ".md", text)
    plot(results, opts.batch_size, opts.output + ".png")
    files.write_json_atomically(opts.output + ".json", {
        "command": command, "info": info, "results": results, "ratios": ratios,
        "stages_us_per_example": stages,
        "stage_table": [{"stage": n, "plain": p, "reader": r} for n, p, r in rows]})


if __name__ == "__main__":
    app.run(main)
