"""End-to-end demo (`make demo`): synthetic data -> train NeXtVLAD -> evaluate -> submission CSV.

    python -m yt8m.demo --output_dir=demo_output

Everything is the library code the command-line tools use (yt8m.synthetic, the trainer, the eval
loop, the inference writer), composed in one process. A video-level LogisticModel on the frame
means is trained too, as the baseline the synthetic data set is built to defeat (SPEC 9): the
frame-level model should beat it clearly. Sized to finish in a few minutes on 2 CPU cores.
"""
import dataclasses
import os
import time

from absl import app
from absl import logging

import yt8m  # noqa: F401
from yt8m import evaluation
from yt8m import synthetic
from yt8m.core import options
from yt8m.core.config import DataConfig, EvalConfig, InferenceConfig, TrainConfig
from yt8m.core.files import write_json_atomically
from yt8m.export.demo import demo_export
from yt8m.inference import video_inference
from yt8m.training import trainer


@dataclasses.dataclass
class DemoOptions:
    output_dir: str = options.option("demo_output", "Where the data, train dirs and CSV go.")
    num_videos: int = options.override(synthetic.Config, "num_videos", 2000)
    num_classes: int = options.override(synthetic.Config, "num_classes", 25)
    seed: int = options.override(synthetic.Config, "seed", 7,
                                 help="Seed of the data set and of the training runs.")
    train_steps: int = options.option(300, "NeXtVLAD training steps.", lower=1)
    batch_size: int = options.override(TrainConfig, "batch_size", 32,
                                       help="Training batch size.")


MAX_FRAMES = 120
FRAME_DATA = DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                        frame_features=True, max_frames=MAX_FRAMES, num_readers=2)
VIDEO_DATA = DataConfig(feature_names=("mean_rgb", "mean_audio"), feature_sizes=(1024, 128),
                        frame_features=False, num_readers=2)
# A NeXtVLAD small enough for 2 CPU cores (the paper's is 8 groups, 128 clusters, 2048 hidden).
NEXTVLAD_HPARAMS = {"nextvlad_cluster_size": 32, "groups": 4, "expansion": 2,
                    "nextvlad_hidden_size": 256, "drop_rate": 0.5, "gating_reduction": 8,
                    # Training sees 40 random frames of each video (4x cheaper steps);
                    # evaluation and inference use every frame.
                    "sample_random_frames": True, "iterations": 40}


def _banner(text):
    logging.info("=" * 20 + " %s " + "=" * 20, text)


def _train(demo, train_dir, pattern, model, data, hparams, base_learning_rate):
    data = dataclasses.replace(data, num_classes=demo.num_classes)
    config = TrainConfig(
        train_dir=train_dir, train_data_pattern=pattern, data=data, model=model,
        model_hparams=hparams, batch_size=demo.batch_size, base_learning_rate=base_learning_rate,
        learning_rate_decay=0.8, learning_rate_decay_examples=8000, num_epochs=1000,
        max_steps=demo.train_steps, export_model_steps=200, log_every_steps=25,
        shuffle_seed=demo.seed, distribution_strategy="one_device")
    return trainer.train(config)


def _evaluate(train_dir, pattern):
    results = evaluation.run_evaluation(EvalConfig(
        train_dir=train_dir, eval_data_pattern=pattern, batch_size=64, num_readers=2,
        run_once=True))
    return results[-1]


def run_demo(demo=None):
    demo = demo or DemoOptions()
    started = time.time()
    output_dir = demo.output_dir
    data_dir = os.path.join(output_dir, "data")
    _banner(f"1/5 synthetic data set -> {data_dir}")
    synthetic.generate(data_dir, num_videos=demo.num_videos, num_classes=demo.num_classes,
                       seed=demo.seed, num_shards=4, min_frames=60, max_frames=150,
                       num_segment_videos=0)
    frame = os.path.join(data_dir, "frame", "{}*.tfrecord")
    video = os.path.join(data_dir, "video", "{}*.tfrecord")

    nextvlad_dir = os.path.join(output_dir, "nextvlad")
    _banner(f"2/5 training NeXtVLADModel for {demo.train_steps} steps -> {nextvlad_dir}")
    _train(demo, nextvlad_dir, frame.format("train"), "NeXtVLADModel", FRAME_DATA,
           NEXTVLAD_HPARAMS, base_learning_rate=2e-3)
    baseline_dir = os.path.join(output_dir, "logistic_baseline")
    _banner(f"2b/5 baseline: video-level LogisticModel on frame means -> {baseline_dir}")
    _train(demo, baseline_dir, video.format("train"), "LogisticModel", VIDEO_DATA, {},
           base_learning_rate=1e-2)

    _banner("3/5 evaluating on frame/validate")
    nextvlad = _evaluate(nextvlad_dir, frame.format("validate"))
    baseline = _evaluate(baseline_dir, video.format("validate"))

    submission_file = os.path.join(output_dir, "submission.csv")
    _banner(f"4/5 submission for frame/test -> {submission_file}")
    num_videos = video_inference.run_inference(InferenceConfig(
        train_dir=nextvlad_dir, input_data_pattern=frame.format("test"),
        output_file=submission_file, batch_size=64, num_readers=2))

    export_dir = os.path.join(output_dir, "export")
    _banner(f"5/5 float16 ensemble of both models -> {export_dir}; reload, serve one request")
    served = demo_export([nextvlad_dir, baseline_dir], export_dir,
                         eval_data_pattern=frame.format("validate"))

    summary = {
        "export": {"dir": served["export_dir"], "video_id": served["video_id"],
                   "labels": served["labels"], "top_classes": served["top_classes"][:5]},
        "nextvlad": {key: nextvlad[key] for key in ("gap", "map", "hit_at_one", "perr", "step")},
        "logistic_baseline": {key: baseline[key]
                              for key in ("gap", "map", "hit_at_one", "perr", "step")},
        "submission": submission_file, "submission_videos": num_videos,
        "seconds": round(time.time() - started, 1)}
    write_json_atomically(os.path.join(output_dir, "summary.json"), summary)
    def scores(results):
        return (f"GAP {results['gap']:.4f}  MAP {results['map']:.4f}  "
                f"Hit@1 {results['hit_at_one']:.4f}")

    print(f"""
yt8m demo finished in {summary['seconds']:.0f} s
  NeXtVLADModel (frames)       {scores(nextvlad)}
  LogisticModel (frame means)  {scores(baseline)}
  data set:            {data_dir}
  NeXtVLAD train dir:  {nextvlad_dir}  (checkpoints, TensorBoard events, eval/metrics_step_*.json)
  baseline train dir:  {baseline_dir}
  submission CSV:      {submission_file} ({num_videos} videos)
  float16 SavedModel:  {served['export_dir']}
  served one request:  video {served['video_id']} labels {served['labels']} -> top classes {served['top_classes'][:5]}
  summary:             {os.path.join(output_dir, 'summary.json')}
  TensorBoard:         tensorboard --logdir {output_dir}
""", flush=True)
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    run_demo(options.from_flags(DemoOptions))


if __name__ == "__main__":
    options.define_flags(DemoOptions)
    app.run(main)
