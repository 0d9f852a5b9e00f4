"""Multi-worker training on one machine: each worker's share of the data (counted) and examples/s.

    python bench/multi_worker.py --work_dir=/tmp/yt8m_bench_multi_worker --rounds=2

Writes synthetic frame shards under --work_dir (reused when made with the same settings and
generator code, bench/result_cache.py), then runs train.py itself, --rounds times, alternating:
  1 worker    --distribution_strategy=multi_worker, TF_CONFIG: one worker on 127.0.0.1
  2 workers   the same, TF_CONFIG: two workers on 127.0.0.1
  mirrored prefetch on / off   one process, --distribution_strategy=mirrored over 2 logical
              CPUs, --device_prefetch=true / false (on CPUs the placement copies nothing: it must
              cost nothing either); "mirrored" is the same with the checkout's defaults (with
              --repo, a version from before the device placement)
  ... (baseline)   --baseline_setups run with --baseline_repo (another checkout, e.g. from
              before the input sharding) in the same rounds
Every process gets --num_cpu_devices=2 (a multi-worker CPU worker still has one replica:
TensorFlow's MultiWorkerMirroredStrategy uses one CPU device per worker) and trains --num_epochs
from a fresh train dir.
Counted: the examples each worker's pipeline produced and it trained on (the trainer's count,
"this process read N examples"), per epoch, against the records in the shards.
Speed: examples/s of the whole job (global batch / step time) from the trainer's progress lines,
the median of the windows after the first (which holds tracing). The machine may be shared:
rounds alternate the set-ups (the order reversed every other round), the table gives the best
and the median round.
Writes <output>.json and <output>.md.
"""
import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Optional

from absl import app, logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

import bench_options
import training_runs
from yt8m.core import files
from yt8m.core import options
from yt8m.core.options import option, override
from yt8m.synthetic import Config as SyntheticConfig
from yt8m.training import multi_worker

SETUPS = ("1 worker", "2 workers", "mirrored", "mirrored prefetch on", "mirrored prefetch off")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Options(bench_options.SyntheticScale):
    work_dir: str = option("/tmp/yt8m_bench_multi_worker", "Data set and train dirs.")
    num_videos: int = override(bench_options.SyntheticScale, "num_videos", 1600,
                               help="Synthetic training videos.")
    num_classes: int = override(bench_options.SyntheticScale, "num_classes", 100)
    num_shards: int = override(SyntheticConfig, "num_shards", 8, lower=1,
                               help="Training shards (each worker reads half of them).")
    batch_size: int = override(bench_options.Optimization, "batch_size",
                               help="Examples per replica per step.")
    num_epochs: int = option(2, "Epochs of every run.", lower=1)
    rounds: int = option(2, "Rounds; each runs every set-up once.", lower=1)
    model: str = option("FrameLevelLogisticModel", "Model trained (a light one keeps the input "
                        "pipeline the larger cost).")
    timeout_secs: int = option(900, "Limit for one run of train.py.", lower=1)
    repo: str = option(REPO, "Checkout whose train.py runs (another one measures another "
                       "version, e.g. one from before the input sharding, with "
                       "--setups='1 worker,2 workers,mirrored').")
    baseline_repo: Optional[str] = option(
        None, "A second checkout (e.g. from before the input sharding) whose --baseline_setups "
        "run in the same rounds, alternating with this checkout's (rows '... (baseline)').")
    baseline_setups: tuple[str, ...] = option(
        ("1 worker", "2 workers"), "Set-ups run with --baseline_repo.")
    setups: tuple[str, ...] = option(
        SETUPS[:2] + SETUPS[3:], "Set-ups to run: any of " + ", ".join(SETUPS) + " ('mirrored': "
        "the checkout's defaults).")
    output: str = option("bench/output/multi_worker", "Output path without extension.")


options.define_flags(Options)

_RATE = re.compile(r"step (\d+) \| loss \S+ \| learning rate \S+ \| training GAP \S+ \| "
                   r"([0-9.]+) examples/s")
_READ = re.compile(r"this process read (\d+) examples")
_SHARE = re.compile(r"Worker (\d+) of (\d+) reads its share of (\d+) file\(s\) \((by \w+)\)")


def make_data(opts):
    data_dir = training_runs.synthetic_data(
        os.path.join(opts.work_dir, "data"), **bench_options.synthetic_settings(
            opts, num_shards=opts.num_shards, seed=1, min_frames=60, max_frames=300,
            validate_fraction=0.0, test_fraction=0.0, num_segment_videos=0))
    pattern = os.path.join(data_dir, "frame", "train*.tfrecord")
    records = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)))
    return pattern, records


def train_flags(opts, train_dir, pattern, strategy, extra=()):
    return ["train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
            f"--model={opts.model}", "--frame_features", "--feature_names=rgb,audio",
            "--feature_sizes=1024,128", f"--num_classes={opts.num_classes}", "--max_frames=300",
            f"--batch_size={opts.batch_size}", f"--num_epochs={opts.num_epochs}",
            "--shuffle_seed=1", "--log_every_steps=5", "--export_model_steps=1000000",
            "--num_cpu_devices=2", f"--distribution_strategy={strategy}", *extra]


def run_job(opts, repo, commands, environments, logs_prefix):
    """Starts one process per command, waits for all; returns their logs (raises on failure)."""
    os.makedirs(os.path.dirname(logs_prefix), exist_ok=True)
    processes = []
    for index, (command, env) in enumerate(zip(commands, environments)):
        log = open(f"{logs_prefix}-{index}.log", "w+")
        processes.append((subprocess.Popen([sys.executable, *command], cwd=repo,
                                           env=dict(os.environ, PYTHONPATH=repo, **env),
                                           stdout=log, stderr=subprocess.STDOUT, text=True), log))
    deadline = time.time() + opts.timeout_secs
    logs = []
    for process, log in processes:
        try:
            process.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        text = log.read()
        log.close()
        if process.returncode != 0:
            raise RuntimeError(f"train.py failed (exit {process.returncode}):\n{text[-3000:]}")
        logs.append(text)
    return logs


def workers_job(opts, repo, workers, pattern, run_dir):
    environments = [{"TF_CONFIG": tf_config}
                    for tf_config in multi_worker.local_tf_configs(workers)]
    commands = [train_flags(opts, run_dir, pattern, "multi_worker")] * workers
    return run_job(opts, repo, commands, environments, run_dir)


def summarize_logs(logs, records, num_epochs):
    """Job examples/s (median window after the first) and each worker's counted examples."""
    rates = [float(rate) for _, rate in _RATE.findall(logs[0])][1:]
    # (None: a train.py without the count, e.g. a checkout from before it was added)
    read = [int(_READ.search(log).group(1)) if _READ.search(log) else None for log in logs]
    shares = [list(_SHARE.search(log).groups()) for log in logs if _SHARE.search(log)]
    return {"examples_per_s": statistics.median(rates) if rates else None,
            "examples_read": read,
            "examples_read_per_epoch": [count / num_epochs if count is not None else None
                                        for count in read],
            "records_in_shards": records, "shares": shares}


def main(argv):
    del argv
    opts = options.from_flags(Options)
    unknown = sorted(set(opts.setups + opts.baseline_setups) - set(SETUPS))
    if unknown:
        raise app.UsageError(f"--setups: unknown {unknown}; choose from {list(SETUPS)}")
    os.makedirs(opts.work_dir, exist_ok=True)
    pattern, records = make_data(opts)

    def setups_of(repo):
        def mirrored(extra=()):
            return lambda run_dir: run_job(
                opts, repo, [train_flags(opts, run_dir, pattern, "mirrored", extra)], [{}],
                run_dir)

        return {
            "1 worker": lambda run_dir: workers_job(opts, repo, 1, pattern, run_dir),
            "2 workers": lambda run_dir: workers_job(opts, repo, 2, pattern, run_dir),
            "mirrored": mirrored(),  # the checkout's defaults (any version)
            "mirrored prefetch on": mirrored(["--device_prefetch=true"]),
            "mirrored prefetch off": mirrored(["--device_prefetch=false"]),
        }

    setups = {name: setups_of(opts.repo)[name] for name in opts.setups}
    if opts.baseline_repo:
        setups.update({f"{name} (baseline)": setups_of(opts.baseline_repo)[name]
                       for name in opts.baseline_setups})
    rounds = {name: [] for name in setups}
    for round_index in range(opts.rounds):
        order = list(setups.items())
        for name, start in (order if round_index % 2 == 0 else order[::-1]):  # no favoured place
            run_dir = os.path.join(opts.work_dir, "runs", re.sub(r"[^\w]+", "_", name))
            shutil.rmtree(run_dir, ignore_errors=True)
            rounds[name].append(summarize_logs(start(run_dir), records, opts.num_epochs))
            logging.info("round %d, %s: %s", round_index + 1, name, rounds[name][-1])
    results = {}
    for name, runs in rounds.items():
        rates = [run["examples_per_s"] for run in runs if run["examples_per_s"]]
        results[name] = {"best": max(rates), "median": statistics.median(rates),
                         "examples_read_per_epoch": runs[0]["examples_read_per_epoch"],
                         "shares": runs[0]["shares"], "rounds": runs}
    command = " ".join(["python bench/multi_worker.py"] + sys.argv[1:])
    load = os.getloadavg()
    lines = [f"`{command}`", "",
             f"{records} training videos in {opts.num_shards} shards, {opts.model}, batch "
             f"{opts.batch_size} per replica, {opts.num_epochs} epochs, {os.cpu_count()} CPU "
             f"cores, {opts.rounds} rounds; load average at the end {load[0]:.1f}", "",
             "| set-up | examples/s, best round | median | examples read per epoch, per worker "
             "(counted) | records |", "| --- | ---: | ---: | --- | ---: |"]
    for name, row in results.items():
        counts = " + ".join("not counted" if count is None else f"{count:.0f}"
                            for count in row["examples_read_per_epoch"])
        lines.append(f"| {name} | {row['best']:.0f} | {row['median']:.0f} | {counts} | "
                     f"{records} |")
    text = "\n".join(lines) + "\n"
    print(text)
    files.write_text_atomically(opts.output + ".md", text)
    files.write_json_atomically(opts.output + ".json", {"command": command, "results": results,
                                                         "records": records})


if __name__ == "__main__":
    app.run(main)
