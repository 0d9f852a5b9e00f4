"""Evaluates the checkpoints of a train dir:
`python eval.py --train_dir=... --eval_data_pattern=...`.

Waits for new checkpoints unless --run_once; writes TensorBoard summaries and
train_dir/eval/metrics_step_<step>.json. See docs/training.md.
"""
import yt8m  # noqa: F401
from yt8m import evaluation
from yt8m.core import cli
from yt8m.core import options
from yt8m.core.config import EvalConfig

options.define_flags(EvalConfig)


def main():
    config = options.from_flags(EvalConfig)
    for results in evaluation.run_evaluation(config):
        print(f"eval.py: step {results['step']}: GAP {results['gap']:.4f} MAP {results['map']:.4f} "
              f"Hit@1 {results['hit_at_one']:.4f} PERR {results['perr']:.4f} "
              f"({evaluation.metrics_path(config.train_dir, results['step'])})", flush=True)


if __name__ == "__main__":
    cli.run(main, "eval.py")
