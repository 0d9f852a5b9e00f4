"""Evaluates the checkpoints of a train dir:
`python eval.py --train_dir=... --eval_data_pattern=...`.

Waits for new checkpoints unless --run_once; writes TensorBoard summaries and
train_dir/eval/metrics_step_<step>.json. The model and its hyper-parameters come from
train_dir/model_flags.json; train.py's model flags (--model, --frame_features, --feature_names,
the hyper-parameters, ...) are accepted as the references' eval commands pass them, and a warning
names any that differs from the recorded value. See docs/training.md.
"""
import sys

from absl import flags

import yt8m  # noqa: F401
from yt8m import evaluation
from yt8m.core import cli
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import options
from yt8m.core.config import EvalConfig, RecordedModelFlags

from frame_level_models import hparams

FLAGS = flags.FLAGS
options.define_flags(EvalConfig)
options.define_flags(RecordedModelFlags)
hparams.define_flags()


def main():
    config = options.from_flags(EvalConfig)
    recorded_flags, given_hparams = evaluation.given_model_flags(FLAGS)
    if given_hparams or recorded_flags != RecordedModelFlags():
        model_flags = model_flags_lib.read_model_flags(config.train_dir)
        for warning in evaluation.model_flag_warnings(model_flags, recorded_flags,
                                                      given_hparams):
            print(f"eval.py: warning: {warning}", file=sys.stderr, flush=True)
    for results in evaluation.run_evaluation(config):
        print(f"eval.py: step {results['step']}: GAP {results['gap']:.4f} MAP {results['map']:.4f} "
              f"Hit@1 {results['hit_at_one']:.4f} PERR {results['perr']:.4f} "
              f"({evaluation.metrics_path(config.train_dir, results['step'])})", flush=True)


if __name__ == "__main__":
    cli.run(main, "eval.py")
