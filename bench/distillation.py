"""Online distillation benchmark: the shape of the MOD paper's tables 1 and 2 on synthetic data.

Trains, with the project's trainer (yt8m.training.trainer) on a synthetic YouTube-8M set
(yt8m.synthetic), and evaluates on its validate split (yt8m.evaluation, GAP@20 and MAP):
  - NeXtVLAD                         one base model
  - NeXtVLAD_wide                    K, lambda and H doubled (the paper's NeXtVLAD_large recipe)
  - MixNeXtVLAD(T=t), lambda = t^2   3 NeXtVLAD, t in --temperatures (paper: 0, 1, 10, 20)
  - MODNeXtVLAD(T=--mod_temperature) a --mod_tree tree of NeXtVLAD (paper: 4x3)
  - NeXtVLAD_distill                 leaf 0/0 cut out of the MOD tree (yt8m.distillation.extract)
  - NeXtVLAD_distill (Mix)           branch 0 cut out of the MixNeXtVLAD with the highest T
and writes results.json, results.md (table: parameters, training examples/s, GAP, MAP) and
results.png under --output_dir.

    .venv/bin/python bench/distillation.py                  # full run (docs/online_distillation.md)
    .venv/bin/python bench/distillation.py --quick             # minutes: checks that it works

Everything is scaled to a shared 2-core CPU (see the options); speeds are indicative. The
references' BN momentum 0.999 needs thousands of steps before the moving statistics used at
evaluation settle, so every batch norm runs at --bn_momentum (0.99) here.
"""
import dataclasses
import json
import math
import os
import re
import shutil

from absl import app, logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

import bench_options
import figures
import training_runs
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.distillation import extract
from yt8m.core import files
from yt8m.training import checkpoints


@dataclasses.dataclass
class Options(bench_options.Output, bench_options.Quick, bench_options.SyntheticScale,
              bench_options.FrameRange, bench_options.Generation, bench_options.Optimization,
              bench_options.TrainFrames, bench_options.BatchNorm, bench_options.NeXtVLADSize,
              bench_options.Reuse):
    output_dir: str = override(bench_options.Output, "output_dir", "bench/output/distillation")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 4000)
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 50)
    min_frames: int = override(bench_options.FrameRange, "min_frames", 40)
    max_frames: int = override(bench_options.FrameRange, "max_frames", 100)
    train_frames: int = override(bench_options.TrainFrames, "train_frames", 32)
    seeds: tuple[int, ...] = option(
        (0, 1), "Generator and training seeds: every run is repeated per seed (own data set and "
        "initialisation) and the table shows the mean and the spread.")
    epochs: int = option(6, "Training epochs of every model.", lower=1)
    expansion: int = option(2, "NeXtVLAD lambda (paper 2).", lower=1)
    drop_rate: float = option(0.5, "Dropout before the hidden layer.", lower=0.0, upper=1.0)
    temperatures: tuple[float, ...] = option((0.0, 1.0, 10.0, 20.0),
                                             "MixNeXtVLAD temperatures.")
    mod_tree: str = option("4x3", "MOD tree shape (paper: 4x3).")
    mod_temperature: float = option(20.0, "T of both MOD levels (lambda = T^2), as the paper.")
    runs: tuple[str, ...] = option((), "Only these run labels (default: all).")


options.define_flags(Options)
# --quick: the options it sets.
QUICK = dict(num_videos=160, num_classes=12, min_frames=20, max_frames=40, epochs=1,
             batch_size=16, train_frames=16, cluster_size=4, groups=2, hidden_size=16,
             temperatures=(0.0, 20.0), mod_tree="2x2")


@dataclasses.dataclass
class Run:
    label: str
    model: str
    hparams: dict
    base_models: int


def _scale(opts):
    """The options --quick sets, as reported."""
    return {name: getattr(opts, name) for name in QUICK}


def _slug(label):
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")


def _runs(opts):
    base = dict(nextvlad_cluster_size=opts.cluster_size, groups=opts.groups,
                expansion=opts.expansion, nextvlad_hidden_size=opts.hidden_size,
                drop_rate=opts.drop_rate, sample_random_frames=True,
                iterations=opts.train_frames)
    wide = dict(base, nextvlad_cluster_size=2 * opts.cluster_size,
                expansion=2 * opts.expansion, nextvlad_hidden_size=2 * opts.hidden_size)
    runs = [Run("NeXtVLAD", "NeXtVLADModel", base, 1),
            Run("NeXtVLAD_wide", "NeXtVLADModel", wide, 1)]
    for t in opts.temperatures:
        runs.append(Run(f"MixNeXtVLAD(T={t:g})", "MixNeXtVLADModel",
                        dict(base, mix_number=3, cl_temperature=t, cl_lambda=t * t), 3))
    t = opts.mod_temperature
    shape = [int(count) for count in opts.mod_tree.split("x")]
    runs.append(Run(f"MODNeXtVLAD {opts.mod_tree}(T={t:g})", "MODNeXtVLADModel",
                    dict(base, mod_tree=opts.mod_tree, cl_temperature=t, cl_lambda=t * t),
                    math.prod(shape)))
    return runs


def _data(opts, seed):
    """Generates (or reuses) the synthetic set; returns its directory."""
    settings = bench_options.synthetic_settings(opts, seed=seed, test_fraction=0.0,
                                                num_segment_videos=0, num_shards=2)
    return training_runs.synthetic_data(
        training_runs.settings_dir(opts.output_dir, "data", settings), opts.num_workers,
        **settings)


def _train_and_evaluate(run, opts, data_dir, seed):
    train_dir = os.path.join(opts.output_dir, "runs", f"seed_{seed}", _slug(run.label))
    settings = {"model": run.model, "hparams": run.hparams, "scale": _scale(opts), "seed": seed,
                "learning_rate": opts.learning_rate, "bn_momentum": opts.bn_momentum,
                "data_dir": data_dir}
    result = training_runs.train_and_evaluate(
        train_dir, data_dir, model=run.model, hparams=run.hparams, frame_level=True,
        num_classes=opts.num_classes, max_frames=opts.max_frames,
        batch_size=opts.batch_size, learning_rate=opts.learning_rate,
        epochs=opts.epochs, bn_momentum=opts.bn_momentum, seed=seed, settings=settings,
        reuse=opts.reuse)
    result.update(label=run.label, base_models=run.base_models)
    return train_dir, result


def _extracted(opts, label, source_dir, path, data_dir, seed):
    """Cuts `path` out of the tree in source_dir and evaluates it alone."""
    output_dir = os.path.join(opts.output_dir, "runs", f"seed_{seed}", _slug(label))
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)  # the source may have been retrained: cut again
    extract.extract(source_dir, path, output_dir)
    model = checkpoints.load_model(output_dir)
    return {"label": label, "model": "NeXtVLADModel (cut from " + os.path.basename(source_dir)
            + " at " + "/".join(map(str, path)) + ")", "base_models": 1,
            "parameters": training_runs.trainable_parameters(model),
            "train_examples_per_second": None, **training_runs.evaluate(output_dir, data_dir)}


def _summaries(per_seed):
    """{seed: [result, ...]} -> one row per label with the mean and range over the seeds."""
    rows = {}
    for seed, results in per_seed.items():
        for r in results:
            row = rows.setdefault(r["label"], {key: r[key] for key in (
                "label", "base_models", "parameters")} | {"gap": [], "map": [], "rate": []})
            row["gap"].append(r["gap"])
            row["map"].append(r["map"])
            if r["train_examples_per_second"] is not None:
                row["rate"].append(r["train_examples_per_second"])
    for row in rows.values():
        for metric in ("gap", "map"):
            values = row[metric]
            row[metric + "_mean"] = sum(values) / len(values)
            row[metric + "_spread"] = (max(values) - min(values)) / 2
        row["rate_mean"] = sum(row["rate"]) / len(row["rate"]) if row["rate"] else None
    return list(rows.values())


def _table(rows, opts):
    many = len(opts.seeds) > 1

    def cell(row, metric):
        text = f"{row[metric + '_mean']:.4f}"
        return text + (f" ± {row[metric + '_spread']:.4f}" if many else "")

    lines = ["| Model | Base models | Trainable parameters | Train examples/s | GAP | MAP |"
             + (" GAP per seed |" if many else ""),
             "| --- | ---: | ---: | ---: | ---: | ---: |" + (" --- |" if many else "")]
    for row in rows:
        rate = row["rate_mean"]
        lines.append(f"| {row['label']} | {row['base_models']} | {row['parameters']:,} | "
                     f"{'(in tree)' if rate is None else f'{rate:.1f}'} | {cell(row, 'gap')} | "
                     f"{cell(row, 'map')} |"
                     + (" " + ", ".join(f"{value:.4f}" for value in row["gap"]) + " |"
                        if many else ""))
    lines.append("")
    lines.append(f"Scale: {json.dumps(_scale(opts), sort_keys=True)}; learning rate "
                 f"{opts.learning_rate}, BN momentum {opts.bn_momentum}, seeds "
                 f"{','.join(map(str, opts.seeds))}" + (" (mean ± half the range over the seeds)"
                                                    if many else "") + ".")
    return "\n".join(lines) + "\n"


def _plot(rows, path):
    labels = [row["label"] for row in rows]
    figure, axes = figures.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.5), sharey=True)
    for axis, metric in zip(axes, ("gap", "map")):
        means = [row[metric + "_mean"] for row in rows]
        spreads = [row[metric + "_spread"] for row in rows]
        bars = axis.barh(range(len(rows)), means, xerr=spreads, color="tab:blue", capsize=3)
        for bar, row in zip(bars, rows):
            axis.text(bar.get_width() + row[metric + "_spread"],
                      bar.get_y() + bar.get_height() / 2,
                      f" {row[metric + '_mean']:.3f} ({row['parameters'] / 1e6:.2f}M)",
                      va="center", fontsize=8)
        axis.set_xlabel(f"validation {metric.upper()} (trainable parameters); bars: seed range")
        low = min(means) - 3 * max(max(spreads), 0.01)
        axis.set_xlim(max(0.0, low), max(means) + (max(means) - max(0.0, low)) * 0.6)
    axes[0].set_yticks(range(len(rows)), labels)
    axes[0].invert_yaxis()
    figure.suptitle("Online distillation on synthetic YouTube-8M (bench/distillation.py)")
    figures.save_png(figure, path)


def _run_seed(opts, seed):
    data_dir = _data(opts, seed)
    results, train_dirs = [], {}
    for run in _runs(opts):
        if opts.runs and run.label not in opts.runs:
            continue
        logging.info("=== seed %d: %s", seed, run.label)
        train_dirs[run.label], result = _train_and_evaluate(run, opts, data_dir, seed)
        results.append(result)
        logging.info("%s: GAP %.4f MAP %.4f, %.1f examples/s", run.label, result["gap"],
                     result["map"], result["train_examples_per_second"])
    for label, source in ((f"NeXtVLAD_distill (MOD {opts.mod_tree})", "MODNeXtVLAD"),
                          ("NeXtVLAD_distill (Mix, highest T)", "MixNeXtVLAD")):
        candidates = [key for key in train_dirs if key.startswith(source)]
        if candidates:
            results.append(_extracted(opts, label, train_dirs[candidates[-1]],
                                      (0, 0) if source == "MODNeXtVLAD" else (0,), data_dir,
                                      seed))
    return results


def main(argv):
    del argv
    opts = options.from_flags(Options)
    opts = opts.scaled(**QUICK)
    if not opts.seeds:
        raise app.UsageError("--seeds is empty: give at least one seed")
    os.makedirs(opts.output_dir, exist_ok=True)
    per_seed = {seed: _run_seed(opts, seed) for seed in opts.seeds}
    rows = _summaries(per_seed)
    files.write_json_atomically(os.path.join(opts.output_dir, "results.json"),
                                {"scale": _scale(opts), "seeds": list(opts.seeds),
                                 "summary": rows, "results": {str(seed): results
                                                              for seed, results in
                                                              per_seed.items()}})
    table = _table(rows, opts)
    files.write_text_atomically(os.path.join(opts.output_dir, "results.md"), table)
    _plot(rows, os.path.join(opts.output_dir, "results.png"))
    print(table)


if __name__ == "__main__":
    app.run(main)
