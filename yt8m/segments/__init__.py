"""Segment-level temporal concept localization (the 2019 YouTube-8M challenge, MOD recipe).

- `finetune`: warm start a segment model from a video-level train dir (`train.py --finetune_from`).
- `inference`: video-model candidates x segment-model scores -> `Class,Segments` CSV
  (`python -m yt8m.segments.inference`).
- `evaluate`: MAP@K of a segment CSV against segment-rated TFRecords
  (`python -m yt8m.segments.evaluate`).
See docs/segments.md.
"""
