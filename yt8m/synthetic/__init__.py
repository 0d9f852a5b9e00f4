"""Synthetic YouTube-8M data: the public record formats with a task that needs frames.

No real data set can be downloaded here, so tests, demos and benchmarks run on files written by
this package (docs/synthetic.md):

- `generator`: what the videos look like (classes, twins, shots, frames, segment ratings), a pure
  function of (seed, split, video index);
- `writer`: `generate(output_dir, ...)` writes the shards and CSVs atomically.

Run: python -m yt8m.synthetic --output_dir=/tmp/yt8m_synth --num_videos=1000 --num_classes=100
"""
from yt8m.synthetic.generator import SPLITS, Config, build_world, plan_video
from yt8m.synthetic.writer import generate

__all__ = ["SPLITS", "Config", "build_world", "generate", "plan_video"]
