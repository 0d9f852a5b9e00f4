"""Trains a YouTube-8M model: `python train.py --train_dir=... --train_data_pattern=...`.

A thin entry point: flags (the options of yt8m.core.config.TrainConfig, the model
hyper-parameters of frame_level_models.hparams, the distillation options of
yt8m.distillation.config and the finetune options of yt8m.segments.finetune) ->
yt8m.training.trainer.train. See docs/training.md and docs/distillation_toolkit.md.
"""
from absl import flags

import yt8m  # noqa: F401
from yt8m.core import cli
from yt8m.core import options
from yt8m.core.config import LocalDevices, TrainConfig
from yt8m.distillation import distill_flags
from yt8m.distillation import training_setup
from yt8m.segments import finetune
from yt8m.training import distribution
from yt8m.training import trainer
from yt8m.training.model_builder import check_model_choice
from yt8m.training.multi_worker import WorkerLostError

import frame_level_models
from frame_level_models import hparams

FLAGS = flags.FLAGS
options.define_flags(TrainConfig)
options.define_flags(LocalDevices)
hparams.define_flags()
distill_flags.define_flags()
finetune.define_flags()


def main():
    # Choosing GPUs and splitting the CPU must come before TensorFlow runs anything.
    distribution.configure_local_devices(options.from_flags(LocalDevices))
    warm_start = finetune.warm_start_source(FLAGS)
    if warm_start:  # model, inputs and hparams come from the source train dir
        config = finetune.config_from_flags(FLAGS)
    else:
        # A reference spelling (e.g. MixNeXtVladModel) runs and is recorded as the zoo's name.
        model = frame_level_models.canonical_name(FLAGS.model)
        check_model_choice(model, FLAGS.frame_features)
        unused = hparams.unused_flags(model)
        if unused:
            cli.warn("train.py", f"--model={FLAGS.model} does not use "
                     f"{', '.join('--' + name for name in unused)}: ignored")
        config = options.from_flags(
            TrainConfig, model=model,
            model_hparams=hparams.hparams_from_flags(FLAGS, model_name=model))
    # Distillation: the student's config (k frames) and the wrapper the steps train.
    config, training_model_factory = training_setup.prepare(
        config, distill_flags.config_from_flags(FLAGS))
    if warm_start:  # warm start (a fresh train dir only), then any distillation wrapper
        training_model_factory = finetune.warm_start_factory(config, warm_start,
                                                             training_model_factory)
    result = trainer.train(config, training_model_factory=training_model_factory)
    print(f"train.py: stopped at step {result.step} ({result.stop_reason}); "
          f"checkpoint {result.checkpoint}", flush=True)


if __name__ == "__main__":
    cli.run(main, "train.py", more_user_errors=(trainer.NonFiniteLossError, WorkerLostError))
