"""Throughput of the streaming evaluation metrics (yt8m.metrics.EvaluationMetrics).

Feeds random sigmoid-like predictions with ~3 positives a video through `accumulate` batch by
batch, then times `get()` (GAP/MAP from the stored top-k triplets). Prints one line per setting.

  .venv/bin/python bench/metrics_throughput.py --num_videos=100000 --batch_size=1024
"""
import dataclasses
import time

import numpy as np
from absl import app

import bench_options
from yt8m import metrics
from yt8m.core import options
from yt8m.core.option_groups import TopK
from yt8m.core.options import override


@dataclasses.dataclass
class Options(bench_options.SyntheticScale, TopK):
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 100000,
                               help="Videos of random predictions fed to the metrics.")
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 3862)
    batch_size: int = override(bench_options.Optimization, "batch_size", 1024,
                               help="Videos per accumulate() call.")
    top_k: int = override(TopK, "top_k", help="Predictions kept per video (GAP@k).")


options.define_flags(Options)


def run(num_videos, batch_size, num_classes, top_k, seed=0):
    rng = np.random.default_rng(seed)
    streaming = metrics.EvaluationMetrics(num_classes, top_k)
    accumulate_seconds = 0.0
    for start in range(0, num_videos, batch_size):
        size = min(batch_size, num_videos - start)
        predictions = rng.random((size, num_classes), dtype=np.float32)
        labels = np.zeros((size, num_classes), np.float32)
        labels[np.arange(size)[:, None], rng.integers(0, num_classes, (size, 3))] = 1.0
        started = time.perf_counter()
        streaming.accumulate(predictions, labels)
        accumulate_seconds += time.perf_counter() - started
    started = time.perf_counter()
    result = streaming.get()
    get_seconds = time.perf_counter() - started
    return accumulate_seconds, get_seconds, result


def main(argv):
    del argv
    args = options.from_flags(Options)
    accumulate_seconds, get_seconds, result = run(args.num_videos, args.batch_size,
                                                  args.num_classes, args.top_k)
    print(f"videos={args.num_videos} classes={args.num_classes} batch={args.batch_size} "
          f"top_k={args.top_k}: accumulate {args.num_videos / accumulate_seconds:,.0f} videos/s "
          f"({accumulate_seconds:.2f} s), get() {get_seconds:.2f} s, "
          f"GAP {result['gap']:.4f} (random scores)")


if __name__ == "__main__":
    app.run(main)
