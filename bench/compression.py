"""The constrained-size paper's compression question on the synthetic benchmark (issue 19): does
gradual pruning, stored sparse, beat float16 at a fixed size?

    python bench/compression.py     # 41 min on 2 cores shared with other jobs (load 10-15)
    # 37 min, the first and shorter run in docs/pruning.md:
    python bench/compression.py --train_steps=400 --pruning_begin=0.2 --pruning_end=0.7 --passes=3
    python bench/compression.py --render_only   # the md and the plot again from the json

The paper (shared/papers/constrained-size-float16-ensemble.txt, "Gradual Binary Mask Pruning")
gave up on pruning because TensorFlow stored neither the masks nor sparse tensors compactly, and
won the 1 GB track with float16 ensembles. Here pruning is trained with train.py's options and the
exporter stores a pruned matrix as a 1-bit mask plus its non-zero values (--sparse_weights).

Steps (everything recomputed at every run; --work_dir is replaced):
  1. a synthetic data set; its validation shards are split in two: the "tune" half chooses
     ensemble weights and members, the "report" half gives every GAP below (the test split has
     no labels);
  2. NeXtVLAD and Gated NetVLAD (NetVLADModelLF) at CPU scale, each trained unpruned and pruned to
     every --sparsities value, all for the same --train_steps with the same data order and
     initialisation; the pruned ones with tfmot's polynomial schedule from --pruning_begin to
     --pruning_end (fractions of the steps), masks fixed for the remaining steps;
  3. single-model exports (export_ensemble, verified after reloading): the unpruned model at
     float32 / float16 / int8, each pruned model at float32 / float16 values x dense / sparse
     storage: size on disk, size / the unpruned float32 export, GAP and its change from the
     unpruned float32 model;
  4. the paper's other trade-off: under one byte budget (the reserved size of the larger unpruned
     float32 model, so exactly one float32 member fits) the exporter's --select_under_budget
     chooses members and tunes weights from each pool: float32 members, float16 members,
     pruned-sparse float16 members, and every member (float16, sparse where pruned);
  5. serving speed of every export, all loaded together and timed in turn, pass after pass
     (bench/export_timing.py): best pass, the spread (slowest pass) and the CPU time per
     example;
  6. <output>.json, <output>.md (the tables, the targets) and the size-vs-GAP frontier plot.

Targets (issue 19): the 75% pruned, sparse, float16 export at <= 0.20 of the float32 size with
GAP within 0.005 of the unpruned float32 model; the best pruned-sparse ensemble above the best
float16 ensemble under the same budget; a sparse export serving at >= 0.9 of the dense one's
speed.
"""
import dataclasses
import os
import shutil
import statistics
import time

from absl import app, flags, logging
from matplotlib.lines import Line2D

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)

import bench_options
import figures
from yt8m import synthetic
from yt8m.core import files
from yt8m.core import options
from yt8m.core.config import DataConfig, PruningConfig, TrainConfig
from yt8m.core.options import option, override
from yt8m.export import budget
from yt8m.export import exporter
from yt8m.export import precision as precision_lib
from yt8m.export import validation_data
from yt8m.training import trainer

import export_timing


@dataclasses.dataclass
class CompressionBench(bench_options.SyntheticScale, bench_options.Optimization,
                       bench_options.Timing, bench_options.SpeedBatches):
    work_dir: str = option("bench/output/compression_work",
                           "Data, train dirs and exports; replaced at every run.")
    output: str = option("bench/output/compression",
                         "Output path without extension (.json, .md).")
    plot: str = option("docs/compression.png", "The size-vs-GAP plot.")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 6000, lower=100)
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 50, lower=2)
    train_steps: int = option(800, "Training steps of every model, pruned or not.", lower=10)
    learning_rate: float = override(bench_options.Optimization, "learning_rate", 3e-3,
                                    help="Base learning rate (x0.8 every 8000 examples).")
    sparsities: tuple[float, ...] = option((0.5, 0.75, 0.9), "Target sparsities of the pruned "
                                           "runs.")
    pruning_begin: float = option(0.1, "Pruning starts at this fraction of --train_steps.",
                                  lower=0.0, upper=1.0)
    pruning_end: float = option(0.5, "The target sparsity is reached at this fraction of "
                                "--train_steps.", lower=0.0, upper=1.0)
    pruning_updates: int = option(5, "Mask updates from begin to end (each sorts every pruned "
                                  "matrix: seconds per million elements on a CPU).", lower=1)
    speed_batches: int = override(bench_options.SpeedBatches, "speed_batches", 4,
                                  help="Batches of 32 report videos timed per pass.")
    passes: int = override(bench_options.Timing, "passes", 5)
    render_only: bool = option(False, "Rewrite <output>.md and the plot from <output>.json of "
                               "an earlier run (its settings; nothing trained or exported).")


options.define_flags(CompressionBench)

MAX_FRAMES = 60     # frames each model sees at evaluation and serving
TRAIN_FRAMES = 20   # frames sampled per video and training step
SPEED_BATCH = 32
MARKER = "compression_bench.json"  # marks a work dir this benchmark may replace
# label: (zoo model, hparams); sizes chosen so the two float16 models fit one float32. Batch-norm
# momentum 0.9: the references' 0.999 leaves the moving statistics far from the data after a few
# hundred steps (README, "Model zoo, same budget").
MODELS = {
    "NeXtVLAD": ("NeXtVLADModel", {"nextvlad_cluster_size": 32, "groups": 4, "expansion": 2,
                                   "nextvlad_hidden_size": 256, "bn_momentum": 0.9}),
    "Gated NetVLAD": ("NetVLADModelLF", {"netvlad_cluster_size": 16, "netvlad_hidden_size": 256,
                                         "bn_momentum": 0.9}),
}
# --sparse_weights of the sparse exports: below every pruned sparsity (a matrix pruned to 50% may
# hold a few values fewer than half zeros: tfmot keeps round(n (1 - s)) and ties).
SPARSE_WEIGHTS = 0.4
TARGET_SPARSITY, TARGET_SIZE_RATIO, TARGET_GAP_DROP = 0.75, 0.20, 0.005
TARGET_SPARSE_SPEED = 0.9  # serving examples/s of a sparse export / the dense one
FLOAT32, FLOAT16, INT8 = precision_lib.FLOAT32, precision_lib.FLOAT16, precision_lib.INT8


def _log(started, text):
    logging.info("[%5.0f s] %s", time.perf_counter() - started, text)


def _fresh_work_dir(work_dir):
    """An empty work dir; refuses to empty a directory this benchmark did not write."""
    if os.path.isdir(work_dir) and os.listdir(work_dir):
        if not os.path.exists(os.path.join(work_dir, MARKER)):
            raise ValueError(f"--work_dir={work_dir!r} is not empty and was not written by this "
                             "benchmark; give a new directory")
        shutil.rmtree(work_dir)
    os.makedirs(work_dir)
    files.write_json_atomically(os.path.join(work_dir, MARKER), {"benchmark": __file__})


def _data(bench):
    """(train pattern, tune pattern, report pattern): the validation shards 0-1 and 2-3."""
    data_dir = os.path.join(bench.work_dir, "data")
    synthetic.generate(data_dir, num_videos=bench.num_videos, num_classes=bench.num_classes,
                       seed=11, num_shards=4, min_frames=60, max_frames=150,
                       validate_fraction=0.3, test_fraction=0.02, num_segment_videos=0)
    frames = os.path.join(data_dir, "frame")
    return (os.path.join(frames, "train*.tfrecord"),
            os.path.join(frames, "validate000[01].tfrecord"),
            os.path.join(frames, "validate000[23].tfrecord"))


def _pruning(bench, sparsity):
    if not sparsity:
        return PruningConfig()
    begin = int(bench.pruning_begin * bench.train_steps)
    frequency = max((int(bench.pruning_end * bench.train_steps) - begin)
                    // bench.pruning_updates, 1)
    return PruningConfig(sparsity, begin, begin + frequency * bench.pruning_updates, frequency)


def _slug(label):
    return label.replace(" ", "_").lower()


def _train_dir(bench, label, sparsity):
    return os.path.join(bench.work_dir, f"{_slug(label)}_pruned{round(sparsity * 100)}")


def _train(bench, train_pattern, label, sparsity):
    model, hparams = MODELS[label]
    data = DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                      frame_features=True, max_frames=MAX_FRAMES, num_readers=2,
                      num_classes=bench.num_classes)
    train_dir = _train_dir(bench, label, sparsity)
    config = TrainConfig(
        train_dir=train_dir, train_data_pattern=train_pattern, data=data, model=model,
        model_hparams={**hparams, "sample_random_frames": True, "iterations": TRAIN_FRAMES},
        batch_size=bench.batch_size, base_learning_rate=bench.learning_rate,
        learning_rate_decay=0.8, learning_rate_decay_examples=8000, num_epochs=1000,
        max_steps=bench.train_steps, export_model_steps=bench.train_steps, log_every_steps=100,
        shuffle_seed=3, distribution_strategy="one_device", pruning=_pruning(bench, sparsity))
    started = time.perf_counter()
    trainer.train(config)
    return {"train_dir": train_dir, "train_seconds": time.perf_counter() - started,
            "pruning": config.pruning.record()}


def _export(bench, name, members, precision, sparse_weights, report_pattern, **selection):
    export_dir = os.path.join(bench.work_dir, "exports", name)
    report = exporter.export_ensemble(exporter.ExportConfig(
        members=members, output_dir=export_dir, precision=precision,
        sparse_weights=sparse_weights, eval_data_pattern=report_pattern, **selection))
    sparse_groups = [group for group in report["tensor_groups"] if group["group"] == "sparse"]
    return {"name": name, "export_dir": export_dir, "values": precision,
            "storage": "sparse" if sparse_groups else "dense",
            "on_disk_bytes": report["on_disk_bytes"], "gap": report["gap_exported"],
            "gap_float32_weights": report["gap_float32"],
            "max_abs_prediction_diff": report["max_abs_prediction_diff"],
            "stored_sparsity": (sum(group["sparsity"] * group["elements"]
                                    for group in sparse_groups)
                                / max(sum(group["elements"] for group in sparse_groups), 1)),
            "members": list(report["weights"]), "report": report}


def _single_model_rows(bench, label, runs, report_pattern):
    """The unpruned model at each precision, each pruned one at float32/float16 x dense/sparse."""
    rows = []
    unpruned = runs[(label, 0.0)]["train_dir"]
    for precision in precision_lib.PRECISIONS:
        rows.append(_export(bench, f"{_slug(label)}_{precision}", [unpruned], precision, 0.0,
                            report_pattern))
    for sparsity in bench.sparsities:
        member = runs[(label, sparsity)]["train_dir"]
        for precision in (FLOAT32, FLOAT16):
            for storage, sparse_weights in (("dense", 0.0), ("sparse", SPARSE_WEIGHTS)):
                rows.append(_export(
                    bench, f"{_slug(label)}_pruned{round(sparsity * 100)}_{precision}_{storage}",
                    [member], precision, sparse_weights, report_pattern))
                rows[-1]["sparsity"] = sparsity
    base = rows[0]
    for row in rows:
        row.setdefault("sparsity", 0.0)
        row.update(model=label, size_ratio=row["on_disk_bytes"] / base["on_disk_bytes"],
                   gap_change=row["gap"] - base["gap"])
    return rows


def _ensemble_rows(bench, runs, rows, tune_pattern, report_pattern):
    """The best ensemble of each pool under one budget (the exporter's member selection): what
    the exporter reserves for the larger unpruned float32 model (variables + graph allowance)."""
    unpruned = [runs[(label, 0.0)]["train_dir"] for label in MODELS]
    pruned = [runs[(label, sparsity)]["train_dir"] for label in MODELS
              for sparsity in bench.sparsities]
    reserved = [row["report"]["members"][0]["bytes"][FLOAT32] + exporter.GRAPH_ALLOWANCE_BYTES
                for row in rows if row["sparsity"] == 0.0 and row["values"] == FLOAT32]
    budget_mb = max(reserved) / budget.BYTES_PER_MB
    pools = [("float32 members", unpruned, FLOAT32, 0.0),
             ("float16 members", unpruned, FLOAT16, 0.0),
             ("pruned-sparse float16 members", pruned, FLOAT16, SPARSE_WEIGHTS),
             ("any member, float16 (sparse where pruned)", unpruned + pruned, FLOAT16,
              SPARSE_WEIGHTS)]
    rows = []
    for index, (pool, members, precision, sparse_weights) in enumerate(pools):
        row = _export(bench, f"ensemble_{index}", members, precision, sparse_weights,
                      report_pattern, tune_weights_on=tune_pattern, select_under_budget=True,
                      size_budget_mb=budget_mb)
        selection = row["report"]["selection"]
        row.update(pool=pool, budget_mb=budget_mb, num_members=len(row["members"]),
                   max_members_fitting=max(len(candidate["members"])
                                           for candidate in selection["candidates"]),
                   tune_gap=max(candidate["gap"] for candidate in selection["candidates"]),
                   weights=row["report"]["weights"])
        rows.append(row)
    return rows, budget_mb


def _frontier(points):
    """The points no other point beats on both size (smaller) and GAP (higher), by size."""
    ordered = sorted(points)
    frontier, best = [], None
    for size, gap in ordered:
        if best is None or gap > best:
            frontier.append((size, gap))
            best = gap
    return frontier


COLORS = {0.0: "black", 0.5: "#4c72b0", 0.75: "#dd8452", 0.9: "#c44e52"}
MARKERS = {FLOAT32: "o", FLOAT16: "s", INT8: "^"}


def _plot(rows, ensembles, budget_mb, path):
    labels = list(MODELS)
    figure, axes = figures.subplots(1, len(labels) + 1, figsize=(5.5 * (len(labels) + 1), 5.2))
    for axis, label in zip(axes, labels):
        model_rows = [row for row in rows if row["model"] == label]
        base = model_rows[0]
        axis.axvline(TARGET_SIZE_RATIO, color="gray", linestyle=":", linewidth=1)
        axis.axhline(base["gap"] - TARGET_GAP_DROP, color="gray", linestyle=":", linewidth=1)
        frontier = _frontier([(row["size_ratio"], row["gap"]) for row in model_rows])
        sizes, gaps = zip(*(frontier + [(1.05, frontier[-1][1])]))
        axis.step(sizes, gaps, where="post", color="#55a868", linewidth=1.5, zorder=2)
        for row in model_rows:
            color = COLORS.get(row["sparsity"], "gray")
            filled = row["storage"] == "sparse" or row["sparsity"] == 0.0
            axis.scatter(row["size_ratio"], row["gap"], marker=MARKERS[row["values"]], s=60,
                         edgecolors=color, facecolors=color if filled else "white", zorder=3)
        axis.set_xlabel("export size / unpruned float32 export")
        axis.set_ylabel("GAP (report half of validate)")
        axis.set_title(label)
    axis = axes[-1]
    for index, row in enumerate(ensembles):
        size = row["on_disk_bytes"] / budget.BYTES_PER_MB
        axis.scatter(size, row["gap"], s=60, zorder=3, color=f"C{index}",
                     label=f"{row['pool']}: {row['num_members']} member(s)")
    axis.axvline(budget_mb, color="gray", linestyle=":")
    axis.annotate(f"budget {budget_mb:.1f} MB", (budget_mb, axis.get_ylim()[0]), fontsize=8,
                  rotation=90, ha="right", va="bottom")
    axis.set_xlim(0, budget_mb * 1.1)
    axis.set_xlabel("ensemble size on disk (MB)")
    axis.set_ylabel("GAP (report half of validate)")
    axis.set_title("Best ensemble of each pool under the budget")
    axis.legend(fontsize=7, loc="best")
    handles = [Line2D([], [], color="#55a868", label="frontier"),
               Line2D([], [], color="gray", linestyle=":",
                             label=f"targets: size <= {TARGET_SIZE_RATIO:g}, GAP >= unpruned "
                                   f"float32 - {TARGET_GAP_DROP:g}")]
    handles += [Line2D([], [], color=color, marker="o", linestyle="",
                              label="unpruned" if not sparsity else f"pruned {sparsity:.0%}")
                for sparsity, color in COLORS.items()]
    handles += [Line2D([], [], color="gray", marker=marker, linestyle="",
                              label=f"{values} values") for values, marker in MARKERS.items()]
    handles.append(Line2D([], [], color="gray", marker="o", markerfacecolor="white",
                                 linestyle="", label="pruned, stored dense (hollow)"))
    figure.legend(handles=handles, loc="lower center", ncol=5, fontsize=8)
    figures.save_png(figure, path, dpi=100, rect=(0, 0.1, 1, 1))  # the legend below the panels


def _rate(row):
    return (f"{row['examples_per_second']:.0f} ({row['slowest_examples_per_second']:.0f}) | "
            f"{row['cpu_ms_per_example']:.2f}")


def _markdown(bench, rows, ensembles, budget_mb, targets, command, runs):
    lines = [f"Command: `{command}`", "",
             f"Synthetic data: {bench.num_videos} videos, {bench.num_classes} classes; every "
             f"model trained {bench.train_steps} steps of {bench.batch_size} videos "
             f"({TRAIN_FRAMES} random frames each), evaluated and served on up to {MAX_FRAMES} "
             "frames. GAP on the report half of the validation split. Pruned runs: "
             f"{_pruning(bench, 0.5).pruning_begin_step} -> "
             f"{_pruning(bench, 0.5).pruning_end_step} (every "
             f"{_pruning(bench, 0.5).pruning_frequency} steps). examples/s: best pass (slowest "
             f"pass) of {bench.passes}, all exports timed in turn on a machine shared with other "
             "jobs; CPU ms: process CPU time per example (median pass), the steadier number "
             "there.", "",
             "| model | pruned | values | storage | on disk (MB) | size / float32 | GAP | "
             "GAP change | max abs diff | examples/s (slowest) | CPU ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['sparsity']:.0%} | {row['values']} | {row['storage']} | "
            f"{row['on_disk_bytes'] / budget.BYTES_PER_MB:.2f} | {row['size_ratio']:.3f} | "
            f"{row['gap']:.4f} | {row['gap_change']:+.4f} | "
            f"{row['max_abs_prediction_diff']:.1g} | {_rate(row)} |")
    lines += ["", f"Ensembles under one budget of {budget_mb:.2f} MB (the reserved size of the "
              "larger float32 model: variables + the exporter's 1 MB graph allowance per member); "
              "members chosen and weighted on the tune half by --select_under_budget:", "",
              "| pool | members chosen | fitting at most | on disk (MB) | GAP (tune) | GAP | "
              "examples/s (slowest) | CPU ms |",
              "|---|---|---|---|---|---|---|---|"]
    for row in ensembles:
        chosen = ", ".join(f"{os.path.basename(member)} {weight:.2f}"
                           for member, weight in row["weights"].items())
        lines.append(f"| {row['pool']} | {chosen} | {row['max_members_fitting']} | "
                     f"{row['on_disk_bytes'] / budget.BYTES_PER_MB:.2f} | "
                     f"{row['tune_gap']:.4f} | {row['gap']:.4f} | {_rate(row)} |")
    lines += ["", "Targets:", ""] + [f"- {line}" for line in targets]
    lines += ["", "Training time (s): " + ", ".join(
        f"{os.path.basename(run['train_dir'])} {run['train_seconds']:.0f}"
        for run in runs.values())]
    return "\n".join(lines) + "\n"


def _targets(rows, ensembles):
    lines, met = [], {}
    for label in MODELS:
        candidates = [row for row in rows if row["model"] == label
                      and row["sparsity"] == TARGET_SPARSITY and row["values"] == FLOAT16
                      and row["storage"] == "sparse"]
        for row in candidates:
            ok = row["size_ratio"] <= TARGET_SIZE_RATIO and row["gap_change"] >= -TARGET_GAP_DROP
            met[label] = ok
            lines.append(
                f"{label} pruned {TARGET_SPARSITY:.0%} + sparse + float16: size "
                f"{row['size_ratio']:.3f} of float32 (target <= {TARGET_SIZE_RATIO:g}), GAP "
                f"change {row['gap_change']:+.4f} (target >= -{TARGET_GAP_DROP:g}): "
                f"{'met' if ok else 'not met'}")
        frontier = [row for row in rows if row["model"] == label
                    and row["size_ratio"] <= TARGET_SIZE_RATIO]
        if frontier:
            best = max(frontier, key=lambda row: row["gap"])
            lines.append(f"{label}: best export at <= {TARGET_SIZE_RATIO:g} of float32: "
                         f"{best['name']} (size {best['size_ratio']:.3f}, GAP change "
                         f"{best['gap_change']:+.4f})")
    pools = {row["pool"]: row for row in ensembles}
    sparse_pool, float16_pool = pools["pruned-sparse float16 members"], pools["float16 members"]
    difference = sparse_pool["gap"] - float16_pool["gap"]
    met["ensemble"] = difference > 0
    lines.append(f"best pruned-sparse ensemble ({sparse_pool['num_members']} members) GAP "
                 f"{sparse_pool['gap']:.4f} vs best float16 ensemble "
                 f"({float16_pool['num_members']} members) {float16_pool['gap']:.4f}: "
                 f"difference {difference:+.4f} ({'met' if difference > 0 else 'not met'})")
    line, met["sparse_speed"] = _sparse_speed(rows)
    lines.append(line)
    return lines, met


def _sparse_speed(rows):
    """(target line, met): each sparse export's serving speed over the dense export of the same
    pruned model at the same values, as best-pass examples/s and as CPU time per example."""
    dense = {(row["model"], row["sparsity"], row["values"]): row for row in rows
             if row["sparsity"] and row["storage"] == "dense"}
    pairs = [(row, dense[(row["model"], row["sparsity"], row["values"])]) for row in rows
             if row["storage"] == "sparse"]
    wall = sorted(row["examples_per_second"] / base["examples_per_second"] for row, base in pairs)
    cpu = sorted(base["cpu_ms_per_example"] / row["cpu_ms_per_example"] for row, base in pairs)
    median = statistics.median(wall)
    met = median >= TARGET_SPARSE_SPEED
    return (f"serving speed sparse / dense (same model and values, {len(pairs)} pairs): median "
            f"{median:.2f} (range {wall[0]:.2f}-{wall[-1]:.2f}) in best-pass examples/s, median "
            f"{statistics.median(cpu):.2f} (range {cpu[0]:.2f}-{cpu[-1]:.2f}) in CPU time per "
            f"example (target >= {TARGET_SPARSE_SPEED:g}: {'met' if met else 'not met'})", met)


def main(argv):
    del argv
    bench = options.from_flags(CompressionBench)
    if bench.render_only:
        _render_only(bench)
        return
    if not 0 < bench.pruning_begin < bench.pruning_end <= 1:
        raise ValueError("need 0 < --pruning_begin < --pruning_end <= 1")
    started = time.perf_counter()
    _fresh_work_dir(bench.work_dir)
    train_pattern, tune_pattern, report_pattern = _data(bench)
    _log(started, "data written")
    runs = {}
    for label in MODELS:
        for sparsity in (0.0,) + tuple(bench.sparsities):
            runs[(label, sparsity)] = _train(bench, train_pattern, label, sparsity)
            _log(started, f"trained {label} pruned {sparsity:.0%}")
    rows = []
    for label in MODELS:
        rows += _single_model_rows(bench, label, runs, report_pattern)
        _log(started, f"exported {label}")
    ensembles, budget_mb = _ensemble_rows(bench, runs, rows, tune_pattern, report_pattern)
    _log(started, "exported the ensembles")
    batches = list(validation_data.frame_batches(
        report_pattern, "report", SPEED_BATCH, SPEED_BATCH * bench.speed_batches,
        bench.num_classes, MAX_FRAMES))
    timings = export_timing.time_exports([row["export_dir"] for row in rows + ensembles],
                                         batches, bench.passes)
    for row in rows + ensembles:
        timing = timings[row.pop("export_dir")]
        row.update(examples_per_second=timing.examples_per_second,
                   slowest_examples_per_second=timing.slowest_examples_per_second,
                   cpu_ms_per_example=timing.cpu_seconds_per_example * 1000,
                   load_seconds=timing.load_seconds)
        row.pop("report")
    _log(started, "timed the exports")
    command = " ".join(["python bench/compression.py"] + [
        flags.FLAGS[name].serialize() for name in options.flag_names(CompressionBench)
        if flags.FLAGS[name].present])
    result = {"command": command, "settings": dataclasses.asdict(bench),
              "models": {label: {"model": model, "hparams": hparams}
                         for label, (model, hparams) in MODELS.items()},
              "runs": {f"{label} {sparsity:g}": run for (label, sparsity), run in runs.items()},
              "rows": rows, "ensembles": ensembles, "budget_mb": budget_mb,
              "seconds": time.perf_counter() - started, "load_average": os.getloadavg(),
              "cpu_count": os.cpu_count()}
    _write_outputs(bench, result)


def _write_outputs(bench, result):
    """<output>.json with the targets, <output>.md and the plot, from a run's results."""
    result["targets"], result["targets_met"] = _targets(result["rows"], result["ensembles"])
    text = _markdown(bench, result["rows"], result["ensembles"], result["budget_mb"],
                     result["targets"], result["command"], result["runs"])
    os.makedirs(os.path.dirname(bench.output) or ".", exist_ok=True)
    files.write_json_atomically(bench.output + ".json", result)
    files.write_text_atomically(bench.output + ".md", text)
    _plot(result["rows"], result["ensembles"], result["budget_mb"], bench.plot)
    print(text)


def _render_only(bench):
    """The outputs again from <output>.json, with the settings of the run that wrote it."""
    path = bench.output + ".json"
    result = files.read_json(path)
    settings = {name: tuple(value) if isinstance(value, list) else value
                for name, value in result["settings"].items()}
    _write_outputs(dataclasses.replace(bench, **{**settings, "output": bench.output,
                                                 "plot": bench.plot, "render_only": True}),
                   result)

if __name__ == "__main__":
    app.run(main)
