"""Writes a synthetic YouTube-8M data set (the generator: yt8m.synthetic.generator) in the public
layouts (SPEC section 1) under `output_dir`:

    frame/{train,validate,test}NNNN.tfrecord   frame-level SequenceExamples
    video/{train,validate,test}NNNN.tfrecord   video-level Examples of the same videos (frame means)
    segment/validateNNNN.tfrecord              frame level + segment_labels/start_times/scores
    segment/testNNNN.tfrecord                  frame level, no ratings
    vocabulary.csv, segment_label_ids.csv, generator_config.json

Every file appears complete or not at all (yt8m.core.files). Videos may be encoded in worker
processes; the bytes do not depend on how many.
"""
import concurrent.futures
import contextlib
import csv
import dataclasses
import io
import json
import multiprocessing
import os
import time

import numpy as np
from absl import logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core import files
from yt8m.data import records
from yt8m.synthetic.generator import SPLITS, Config, build_world, encode_video
from yt8m.core import errors


def _shard_ranges(num_videos, num_shards):
    num_shards = min(num_shards, num_videos)
    if num_shards == 0:
        return []
    bounds = [num_videos * i // num_shards for i in range(num_shards + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


_worker_state = {}


def _start_worker(config):
    _worker_state["world"] = build_world(config)
    _worker_state["config"] = config


def _encode_in_worker(job):
    split, index = job
    return encode_video(_worker_state["world"], _worker_state["config"], split, index)


@contextlib.contextmanager
def _shard_writer(path):
    """A TFRecordWriter whose file appears at `path` once complete."""
    with files.atomic_path(path) as temp_path, tf.io.TFRecordWriter(temp_path) as writer:
        yield writer


def _write_split(world, config, split, output_dir, train_counts, executor):
    """Writes one split's shards; returns (paths by directory, ratings written)."""
    _, _, directory, stem = SPLITS[split]
    paths = {directory: [], "video": []}
    ratings = {"positive": 0, "negative": 0}
    for shard, (begin, end) in enumerate(_shard_ranges(config.split_sizes()[split],
                                                       config.num_shards)):
        started = time.perf_counter()
        name = f"{stem}{shard:04d}.tfrecord"
        frame_path = os.path.join(output_dir, directory, name)
        video_path = os.path.join(output_dir, "video", name) if directory == "frame" else None
        jobs = [(split, index) for index in range(begin, end)]
        if executor is None:
            encoded = (encode_video(world, config, split, index) for _, index in jobs)
        else:  # map() keeps the order, so the bytes do not depend on the number of workers
            encoded = executor.map(_encode_in_worker, jobs, chunksize=8)
        with contextlib.ExitStack() as stack:
            frame_writer = stack.enter_context(_shard_writer(frame_path))
            video_writer = stack.enter_context(_shard_writer(video_path)) if video_path else None
            for video in encoded:
                frame_writer.write(video.frame_record)
                if video_writer is not None:
                    video_writer.write(video.video_record)
                if split == "train":
                    train_counts[video.labels] += 1
                ratings["positive"] += int(sum(video.segment_scores))
                ratings["negative"] += len(video.segment_scores) - int(sum(video.segment_scores))
        paths[directory].append(frame_path)
        if video_path:
            paths["video"].append(video_path)
        seconds = time.perf_counter() - started
        logging.info("wrote %s/%s: %d videos, %.0f videos/s", directory, name, end - begin,
                     (end - begin) / max(seconds, 1e-9))
    return paths, ratings


def _planned_shards(config):
    """Relative paths of every shard `config` writes."""
    planned = set()
    for split, (_, _, directory, stem) in SPLITS.items():
        for shard in range(len(_shard_ranges(config.split_sizes()[split], config.num_shards))):
            name = f"{stem}{shard:04d}.tfrecord"
            planned.add(os.path.join(directory, name))
            if directory == "frame":
                planned.add(os.path.join("video", name))
    return planned


def _check_no_stale_shards(output_dir, config):
    """Refuses a directory holding shards this run would not overwrite: readers globbing
    `frame/train*` would mix them with the new ones."""
    existing = {os.path.join(directory, name)
                for directory in ("frame", "video", "segment")
                if os.path.isdir(os.path.join(output_dir, directory))
                for name in os.listdir(os.path.join(output_dir, directory))
                if name.endswith(".tfrecord")}
    stale = sorted(existing - _planned_shards(config))
    if stale:
        raise errors.InvalidInputError(
            f"--output_dir={output_dir!r} holds shards this run would not "
            f"overwrite ({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); "
            "use an empty directory")


def vocabulary_csv(world, train_counts):
    out = io.StringIO()
    out.write(records.VOCABULARY_HEADER + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for class_id in range(world.num_classes):
        verticals = [world.vertical_names[v] for v in world.verticals[class_id] if v >= 0]
        modes = ", ".join(f"{a}+{b}" for a, b in world.rgb_modes[class_id])
        how = "in the same frames" if world.together[class_id] else "in different frames"
        twin = (f"; twin of class {world.twin[class_id]}" if world.twin[class_id] >= 0 else "")
        writer.writerow([class_id, int(train_counts[class_id]), f"/m/synth{class_id:05d}",
                         f"Synthetic class {class_id}",
                         f"https://example.org/yt8m-synthetic/class{class_id}",
                         *(verticals + ["", "", ""])[:3],
                         f"Synthetic class: atom pairs {modes} shown {how}{twin}."])
    return out.getvalue()


def generate(output_dir, num_workers=1, **options):
    """Writes a synthetic data set under `output_dir`; returns what was written.

    `options` are the fields of `Config` (num_videos, num_classes, seed, num_shards, min_frames,
    max_frames, validate_fraction, test_fraction, num_segment_videos, label noise, appearance).
    `num_workers` > 1 encodes videos in that many processes; the bytes stay the same.
    """
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ValueError(f"generate(): unknown option(s) {', '.join(unknown)}")
    config = Config(**options)
    if num_workers < 1:
        raise errors.InvalidInputError(f"--num_workers={num_workers!r}: must be at least 1")
    if not output_dir:
        raise errors.InvalidInputError("--output_dir must be set")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise errors.InvalidInputError(f"--output_dir={output_dir!r} exists and is not a directory")
    _check_no_stale_shards(output_dir, config)
    for directory in ("frame", "video", "segment"):
        os.makedirs(os.path.join(output_dir, directory), exist_ok=True)

    started = time.perf_counter()
    world = build_world(config)
    train_counts = np.zeros(config.num_classes, np.int64)
    written = {}
    ratings = {"positive": 0, "negative": 0}
    executor = None
    if num_workers > 1:
        # spawn, not fork: forking a process that has loaded TensorFlow (its thread pools and
        # locks) can deadlock the child.
        executor = concurrent.futures.ProcessPoolExecutor(
            num_workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(config,))
    try:
        for split in SPLITS:
            paths, split_ratings = _write_split(world, config, split, output_dir, train_counts,
                                                executor)
            _, _, directory, stem = SPLITS[split]
            written[f"{directory}/{stem}"] = paths[directory]
            if paths["video"]:
                written[f"video/{stem}"] = paths["video"]
            for key in ratings:
                ratings[key] += split_ratings[key]
    finally:
        if executor is not None:
            executor.shutdown()

    vocabulary_path = os.path.join(output_dir, "vocabulary.csv")
    files.write_text_atomically(vocabulary_path, vocabulary_csv(world, train_counts))
    whitelist_path = os.path.join(output_dir, "segment_label_ids.csv")
    files.write_text_atomically(whitelist_path, records.SEGMENT_WHITELIST_HEADER + "\n"
                                + "".join(f"{c}\n" for c in world.segment_classes))
    config_path = os.path.join(output_dir, "generator_config.json")
    files.write_text_atomically(config_path,
                                json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    seconds = time.perf_counter() - started
    sizes = config.split_sizes()
    total_videos = sum(sizes.values())
    logging.info("synthetic data set in %s: %d videos in %.1f s (%.0f videos/s)",
                 output_dir, total_videos, seconds, total_videos / max(seconds, 1e-9))
    return {
        "output_dir": output_dir,
        "config": dataclasses.asdict(config),
        "files": written,
        "num_videos": sizes,
        "num_classes": config.num_classes,
        "segment_classes": world.segment_classes.tolist(),
        "segment_ratings": ratings,
        "train_label_counts": train_counts.tolist(),
        "vocabulary": vocabulary_path,
        "segment_label_ids": whitelist_path,
        "generator_config": config_path,
        "seconds": seconds,
        "videos_per_second": total_videos / max(seconds, 1e-9),
    }
