"""Segment localization benchmark: the shape of the MOD paper's table 1 on synthetic data.

On a synthetic set (yt8m.synthetic) whose segment/validate files carry segment ratings, shards
0..n-2 of segment/validate are the finetune set and the last shard is the evaluation set. Rows:
  - Dummy prediction            the video-level NeXtVLAD; every segment gets its video's scores
  - NeXtVLAD, without pretrain  trained from scratch on the rated segments
  - NeXtVLAD, pretrain+finetune warm started from the video-level NeXtVLAD (train.py
                                --finetune_from), finetuned on the rated segments
  - MixNeXtVLAD(T), pretrain+finetune  a 3-branch mixture trained video-level with T, lambda=T^2,
                                then finetuned the same way
  - NeXtVLAD_distill            branch 0 cut out of the finetuned mixture (yt8m.distillation.extract)
Every row ranks with the same pipeline (python -m yt8m.segments.inference): candidates = the
video-level NeXtVLAD's top 20 whitelisted classes, score = P_vid^0.05 * P_seg^0.95, top K per
class; MAP@K by yt8m.segments.evaluate. Finetuning uses the MOD settings (dropout 0.75, L2 1e-4,
T=20, lambda=400, lr decayed 0.8 per --finetune_decay_examples) scaled to the CPU.

    .venv/bin/python bench/segments.py            # ~10 minutes on a 2-core CPU
    .venv/bin/python bench/segments.py --quick    # a minute or two: checks that it works

Writes results.json, results.md and results.png under --output_dir. Speeds are indicative (shared
machine).
"""
import dataclasses
import json
import os
import shutil
import time

from absl import app, logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

import bench_options
import figures
import training_runs
from yt8m.core import files
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.core.config import DataConfig, TrainConfig
from yt8m.data import readers
from yt8m.distillation import extract
from yt8m.segments import evaluate
from yt8m.segments import finetune
from yt8m.segments import inference
from yt8m.segments.segment_options import SegmentRanking
from yt8m.synthetic import Config as SyntheticConfig
from yt8m.training import trainer



@dataclasses.dataclass
class Options(bench_options.Output, bench_options.Quick, bench_options.SyntheticScale,
              bench_options.FrameRange, bench_options.Seed, bench_options.Optimization,
              bench_options.BatchNorm, bench_options.NeXtVLADSize):
    output_dir: str = override(bench_options.Output, "output_dir", "bench/output/segments")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 600)
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 24)
    min_frames: int = override(bench_options.FrameRange, "min_frames", 40)
    max_frames: int = override(bench_options.FrameRange, "max_frames", 100)
    batch_size: int = override(bench_options.Optimization, "batch_size",
                               help="Video-level batch size.")
    learning_rate: float = override(bench_options.Optimization, "learning_rate",
                                    help="Video-level Adam learning rate.")
    groups: int = override(bench_options.NeXtVLADSize, "groups", 4)
    num_segment_videos: int = override(SyntheticConfig, "num_segment_videos", 480)
    video_epochs: int = option(5, "Video-level training epochs.", lower=1)
    finetune_epochs: int = option(10, "Segment training epochs (MOD: 10).", lower=1)
    finetune_batch_size: int = option(64, "Segment batch size (MOD: 512).", lower=1)
    finetune_learning_rate: float = option(2e-4, "Segment learning rate (MOD: 2e-4).")
    finetune_decay_examples: int = option(
        10000, "Segment lr x0.8 every this many examples (MOD: 1M of 237K x 10 epochs).",
        lower=1)
    temperature: float = option(20.0, "MixNeXtVLAD T (lambda = T^2), MOD 2019: 20.")
    segment_top_k: int = override(SegmentRanking, "segment_top_k", 100000,
                                  help="K of MAP@K and of the CSV.")


options.define_flags(Options)
# --quick: the options it sets.
QUICK = dict(num_videos=120, num_segment_videos=80, num_classes=8, min_frames=20, max_frames=40,
             video_epochs=1, finetune_epochs=1, cluster_size=4, groups=2, hidden_size=16)
FINETUNE_HPARAMS = {"drop_rate": finetune.MOD_HPARAM_SETTINGS["drop_rate"],
                    "l2_penalty": finetune.MOD_HPARAM_SETTINGS["l2_penalty"]}


def _scale(opts):
    """The options --quick sets, as reported."""
    return {name: getattr(opts, name) for name in QUICK}


def _data(opts):
    settings = bench_options.synthetic_settings(
        opts, num_segment_videos=opts.num_segment_videos, validate_fraction=0.1,
        test_fraction=0.0, num_shards=4)
    data_dir = training_runs.synthetic_data(
        training_runs.settings_dir(opts.output_dir, "data", settings), **settings)
    shards = readers.list_files(os.path.join(data_dir, "segment", "validate*.tfrecord"))
    return data_dir, shards[:-1], shards[-1:]


def _train(opts, train_dir, model, hparams, data_pattern, segment=False, finetune_from=""):
    """Trains one model (video level, or on rated segments, optionally warm started)."""
    if os.path.exists(train_dir):
        shutil.rmtree(train_dir)
    config = TrainConfig(
        train_dir=train_dir, train_data_pattern=data_pattern,
        data=DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                        frame_features=True, segment_labels=segment,
                        num_classes=opts.num_classes,
                        max_frames=5 if segment else opts.max_frames, num_readers=2),
        model=model, model_hparams=dict(hparams, bn_momentum=opts.bn_momentum),
        start_new_model=True,
        batch_size=opts.finetune_batch_size if segment else opts.batch_size,
        base_learning_rate=opts.finetune_learning_rate if segment else opts.learning_rate,
        learning_rate_decay=0.8 if segment else 0.95,
        learning_rate_decay_examples=opts.finetune_decay_examples if segment else 10 ** 7,
        num_epochs=opts.finetune_epochs if segment else opts.video_epochs,
        export_model_steps=10 ** 9, save_checkpoint_secs=10 ** 9, keep_checkpoint_max=1,
        log_every_steps=20, shuffle_seed=opts.seed)
    factory = finetune.warm_start_factory(config, finetune_from) if finetune_from else None
    started = time.time()
    run = trainer.Trainer(config, training_model_factory=factory)
    outcome = run.run()
    parameters = int(sum(v.shape.num_elements() for v in run.model.trainable_variables))
    return {"steps": outcome.step, "train_seconds": time.time() - started,
            "examples_per_second": outcome.examples_per_second, "parameters": parameters}


def _segment_map(opts, label, video_dir, segment_dir, data_dir, eval_files):
    output_file = os.path.join(opts.output_dir, "csv", label.replace(" ", "_") + ".csv")
    whitelist = os.path.join(data_dir, "segment_label_ids.csv")
    pattern = ",".join(eval_files)
    started = time.time()
    result = inference.run_segment_inference(inference.SegmentInferenceConfig(
        input_data_pattern=pattern, video_model=video_dir, segment_model=segment_dir,
        output_file=output_file, segment_label_ids=whitelist,
        segment_top_k=opts.segment_top_k, overwrite=True))
    seconds = time.time() - started
    evaluation = evaluate.evaluate_submission(output_file, pattern, whitelist,
                                              opts.segment_top_k)
    return {"segment_map": evaluation.map_at_k, "classes_scored": evaluation.num_classes,
            "rated_pairs": evaluation.num_rated_pairs, "segments": result.num_segments,
            "inference_seconds": seconds}


def _table(rows, opts, split):
    lines = ["| Row | Model | Trainable parameters | Segment MAP@K |",
             "| --- | --- | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['group']} | {row['label']} | {row['parameters']:,} | "
                     f"{row['segment_map']:.4f} |")
    lines.append("")
    lines.append(f"Scale: {json.dumps(_scale(opts), sort_keys=True)}; finetune on {split[0]} "
                 f"rated segment videos, evaluated on {split[1]} ({rows[0]['rated_pairs']} rated "
                 f"pairs, {rows[0]['classes_scored']} classes).")
    return "\n".join(lines) + "\n"


def _plot(rows, path):
    figure, axis = figures.subplots(figsize=(8, 3.6))
    labels = [f"{row['group']}\n{row['label']}" for row in rows]
    values = [row["segment_map"] for row in rows]
    axis.barh(range(len(rows)), values, color="#4a7ab5")
    axis.set_yticks(range(len(rows)), labels, fontsize=8)
    axis.invert_yaxis()
    for index, value in enumerate(values):
        axis.text(value, index, f" {value:.3f}", va="center", fontsize=8)
    axis.set_xlabel("segment MAP@K (synthetic, held-out rated shard)")
    axis.set_xlim(0, max(values) * 1.15)
    figures.save_png(figure, path)


def main(argv):
    del argv
    opts = options.from_flags(Options).scaled(**QUICK)
    os.makedirs(opts.output_dir, exist_ok=True)
    runs_dir = os.path.join(opts.output_dir, "runs")
    started = time.time()
    data_dir, finetune_files, eval_files = _data(opts)
    frame_train = os.path.join(data_dir, "frame", "train*.tfrecord")
    segment_train = ",".join(finetune_files)
    base = dict(nextvlad_cluster_size=opts.cluster_size, groups=opts.groups,
                expansion=2, nextvlad_hidden_size=opts.hidden_size, drop_rate=0.5)
    mix = dict(base, mix_number=3, cl_temperature=opts.temperature,
               cl_lambda=opts.temperature ** 2)
    path = lambda name: os.path.join(runs_dir, name)  # noqa: E731
    video = path("video_nextvlad")
    rows = []

    def add(group, label, train, segment_dir):
        logging.info("Ranking segments: %s %s", group, label)
        rows.append({"group": group, "label": label, **train,
                     **_segment_map(opts, label, video, segment_dir, data_dir, eval_files)})
        logging.info("%s", rows[-1])

    video_train = _train(opts, video, "NeXtVLADModel", base, frame_train)
    add("Without finetune", "Dummy prediction (video NeXtVLAD)", video_train, "")
    add("Without pretrain", "NeXtVLAD",
        _train(opts, path("scratch_nextvlad"), "NeXtVLADModel", dict(base, **FINETUNE_HPARAMS),
               segment_train, segment=True), path("scratch_nextvlad"))
    add("Pretrain and finetune", "NeXtVLAD",
        _train(opts, path("finetuned_nextvlad"), "NeXtVLADModel", dict(base, **FINETUNE_HPARAMS),
               segment_train, segment=True, finetune_from=video),
        path("finetuned_nextvlad"))
    _train(opts, path("video_mix"), "MixNeXtVLADModel", mix, frame_train)
    mix_train = _train(opts, path("finetuned_mix"), "MixNeXtVLADModel",
                       dict(mix, **FINETUNE_HPARAMS), segment_train, segment=True,
                       finetune_from=path("video_mix"))
    add("Pretrain and finetune", f"MixNeXtVLAD(T={opts.temperature:g})", mix_train,
        path("finetuned_mix"))
    distill_dir = path("nextvlad_distill")
    if os.path.exists(distill_dir):
        shutil.rmtree(distill_dir)
    extract.extract(path("finetuned_mix"), (0,), distill_dir)
    add("Pretrain and finetune", "NeXtVLAD_distill (branch 0 of the mixture)",
        {"parameters": rows[2]["parameters"]}, distill_dir)

    split = (f"{len(finetune_files)} shard(s)", f"{len(eval_files)} shard(s)")
    table = _table(rows, opts, split)
    result = {"scale": _scale(opts), "rows": rows, "seconds": time.time() - started,
              "finetune_files": finetune_files, "eval_files": eval_files}
    files.write_json_atomically(os.path.join(opts.output_dir, "results.json"), result)
    files.write_text_atomically(os.path.join(opts.output_dir, "results.md"), table)
    _plot(rows, os.path.join(opts.output_dir, "results.png"))
    print(table)
    print(f"bench/segments.py: {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    app.run(main)
