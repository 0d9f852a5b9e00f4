"""Batch inference on one machine: inference.py's path (tf.data reader -> SavedModel -> CSV) versus
the Beam pipeline (yt8m.beam_inference) on the DirectRunner, same export, same videos.

    .venv/bin/python bench/beam_inference.py --num_videos=512 --model=NetVLADModelLF

Writes random frame-level shards and a train dir with randomly initialised weights (speed does
not depend on training), exports it with export_ensemble, runs both paths, checks their rows are
identical, and prints one JSON line: videos/s of each path. The numbers are indicative: they
depend on the machine and on what else runs on it.
"""
import dataclasses
import json
import os
import shutil
import time

from absl import app

import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf
import tf_keras as keras

import bench_options
import frame_level_models
from yt8m import beam_inference
from yt8m.data import records
from yt8m.export import exporter
from yt8m.export.saved_model_predictor import load_saved_model_predictor
from yt8m.inference import submission
from yt8m.training import checkpoints
from yt8m.core import files
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.synthetic import Config as SyntheticConfig
from yt8m.training import inputs


@dataclasses.dataclass
class Options(bench_options.Output, bench_options.SyntheticScale):
    output_dir: str = override(bench_options.Output, "output_dir", "bench/output/beam_inference",
                               help="Scratch and results.")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 512,
                               help="Videos to predict.")
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 3862)
    num_shards: int = override(SyntheticConfig, "num_shards", 4, lower=1,
                               help="TFRecord files they are spread over.")
    max_frames: int = override(bench_options.FrameRange, "max_frames", 300,
                               help="Frames per video at most (lengths are 60..max_frames).")
    model: str = option("FrameLevelLogisticModel", "Zoo model to export (random weights).")
    batch_size: int = override(bench_options.Optimization, "batch_size",
                               help="Videos per model call on both paths.")
    direct_num_workers: int = option(1, "DirectRunner worker processes.", lower=1)
    repeats: int = override(bench_options.Timing, "passes", 2, help="Runs of each path; the "
                            "fastest counts (the first one also pays for reading the files "
                            "into the page cache).")


options.define_flags(Options)


def write_shards(data_dir, num_videos, num_shards, max_frames, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(data_dir, exist_ok=True)
    writers = [tf.io.TFRecordWriter(os.path.join(data_dir, f"test{shard:03d}.tfrecord"))
               for shard in range(num_shards)]
    for index in range(num_videos):
        length = int(rng.integers(min(60, max_frames), max_frames + 1))
        codes = {"rgb": rng.integers(0, 256, (length, 1024), dtype=np.uint8),
                 "audio": rng.integers(0, 256, (length, 128), dtype=np.uint8)}
        writers[index % num_shards].write(
            records.make_sequence_example(f"video{index:06d}", [], codes).SerializeToString())
    for writer in writers:
        writer.close()
    return os.path.join(data_dir, "test*.tfrecord")


def export_random_model(work_dir, model_name, num_classes, max_frames):
    train_dir = os.path.join(work_dir, "train")
    files.write_json_atomically(os.path.join(train_dir, "model_flags.json"), {
        "model": model_name, "feature_names": "rgb,audio", "feature_sizes": "1024,128",
        "frame_features": True, "num_classes": num_classes, "max_frames": max_frames,
        "label_loss": "CrossEntropyLoss", "hparams": {}})
    model = frame_level_models.build(model_name, num_classes, feature_names="rgb,audio",
                                     feature_sizes="1024,128")
    checkpoints.make_checkpoint_manager(
        tf.train.Checkpoint(model=model, optimizer=keras.optimizers.Adam()), train_dir,
        1).save(checkpoint_number=1)
    export_dir = os.path.join(work_dir, "export")
    exporter.export_ensemble(exporter.ExportConfig(members=[train_dir], output_dir=export_dir))
    return export_dir


def run_inference_path(pattern, export_dir, output_file, batch_size):
    predict, data_config = load_saved_model_predictor(export_dir)
    dataset = inputs.inference_dataset(inputs.require_files(pattern, "pattern"), data_config,
                                       batch_size)
    return submission.write_video_submission(output_file, dataset, predict, 20)


def main(argv):
    del argv
    opts = options.from_flags(Options)
    work_dir = opts.output_dir
    shutil.rmtree(work_dir, ignore_errors=True)
    pattern = write_shards(os.path.join(work_dir, "data"), opts.num_videos, opts.num_shards,
                           opts.max_frames)
    export_dir = export_random_model(work_dir, opts.model, opts.num_classes, opts.max_frames)

    def fastest(run):
        seconds = []
        for _ in range(opts.repeats):
            start = time.time()
            run()
            seconds.append(time.time() - start)
        return min(seconds)

    inference_secs = fastest(lambda: run_inference_path(
        pattern, export_dir, os.path.join(work_dir, "inference.csv"), opts.batch_size))
    config = beam_inference.BeamInferenceConfig(
        input_data_pattern=pattern, saved_model_dir=export_dir,
        output_file=os.path.join(work_dir, "beam.csv"), batch_size=opts.batch_size, overwrite=True)
    mode = "multi_processing" if opts.direct_num_workers > 1 else "in_memory"
    beam_secs = fastest(lambda: beam_inference.run(config, [
        "--runner=DirectRunner", f"--direct_num_workers={opts.direct_num_workers}",
        f"--direct_running_mode={mode}"]))

    def rows(name):
        with open(os.path.join(work_dir, name)) as handle:
            return sorted(handle.read().splitlines()[1:])

    identical = rows("inference.csv") == rows("beam.csv")
    print(json.dumps({
        "model": opts.model, "num_videos": opts.num_videos, "batch_size": opts.batch_size,
        "direct_num_workers": opts.direct_num_workers, "repeats": opts.repeats,
        "inference_path_videos_per_s": round(opts.num_videos / inference_secs, 1),
        "beam_direct_runner_videos_per_s": round(opts.num_videos / beam_secs, 1),
        "rows_identical": identical}), flush=True)
    if not identical:
        raise SystemExit("the two paths wrote different rows")


if __name__ == "__main__":
    app.run(main)
