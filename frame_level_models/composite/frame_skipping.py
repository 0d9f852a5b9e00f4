"""Frame-skipping students (teacher-student paper, SPEC 5): any frame-level zoo model that sees only
k frames of each video, at training and at inference.

`FrameSkippingModel` is registered in the zoo so a student's train dir rebuilds like any other
model (eval.py, inference.py, export, `load_model`): its model_flags.json holds
`student_base_model`, `student_frames`, `frame_selection` and the base model's hparams. train.py
writes that record itself for `--model=<base> --student_frames=k` (the distillation set-up calls
`student_hparams`).
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tf_keras as keras

from frame_level_models import model_parts
from frame_level_models import registry
from frame_level_models.composite import frame_selection
from yt8m.core import errors

MODEL_NAME = "FrameSkippingModel"
NUM_FRAMES = "num_frames"
OWN_HPARAMS = ("student_base_model", "student_frames", "frame_selection")
DESCRIPTION = ("A frame-level model that sees --student_frames frames chosen by "
               "--frame_selection (train.py builds it from --model=<base> --student_frames=k).")


@keras.utils.register_keras_serializable(package="yt8m")
class FrameSelection(keras.layers.Layer):
    """{features..., num_frames} -> the same dict with k frames per video (frame_selection.py).

    "random" draws new frames at every training step; at evaluation and inference it takes the
    uniform frames, so predictions are deterministic (SPEC 4: no sampling at inference).
    """

    def __init__(self, num_frames, strategy="uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames <= 0:
            raise ValueError(f"student_frames must be a positive integer, got {num_frames!r}")
        if strategy not in frame_selection.STRATEGIES:
            raise ValueError(f"Unknown frame selection strategy {strategy!r}; choose one of: "
                             f"{', '.join(frame_selection.STRATEGIES)}")
        self.num_frames = num_frames
        self.strategy = strategy

    def call(self, inputs, training=None):
        features = {name: value for name, value in inputs.items() if name != NUM_FRAMES}
        strategy = self.strategy
        if strategy == "random" and not training:
            strategy = "uniform"
        selected, num_frames = frame_selection.select_frames(features, inputs[NUM_FRAMES],
                                                             self.num_frames, strategy)
        return {**selected, NUM_FRAMES: num_frames}

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames, "strategy": self.strategy}


def split_hparams(hparams):
    """(the student's own hparams, the base model's hparams incl. feature names/sizes)."""
    own = {key: value for key, value in hparams.items() if key in OWN_HPARAMS}
    rest = {key: value for key, value in hparams.items() if key not in OWN_HPARAMS}
    return own, rest


def check_base_model(base):
    """A frame-level zoo model that is a plain functional model (not a mixture or a student)."""
    if base not in registry.model_names():
        raise errors.InvalidInputError(
            f"{MODEL_NAME}: student_base_model={base!r} is not a zoo model; choose "
            f"one of: {', '.join(registry.model_names())}")
    spec = registry.spec(base)
    if spec.builds_model or base == MODEL_NAME:
        raise errors.InvalidInputError(
            f"{MODEL_NAME}: student_base_model={base!r} is a composite model; a "
            "frame-skipping student wraps a single zoo model")
    if not spec.frame_level:
        raise errors.InvalidInputError(
            f"{MODEL_NAME}: student_base_model={base!r} is a video-level model; "
            "frame skipping needs a frame-level model")


@registry.register_composite(MODEL_NAME, frame_level=True, hparams=(), other_names=OWN_HPARAMS,
                             every_hparam=True, description=DESCRIPTION)
def build_frame_skipping_model(name, num_classes, **hparams):
    """The base model behind a FrameSelection layer, as one functional model."""
    own, rest = split_hparams(hparams)
    missing = [key for key in OWN_HPARAMS if own.get(key) is None]
    if missing:
        raise ValueError(f"{name}: missing hparams {', '.join(missing)} (train.py sets them from "
                         "--model and --student_frames / --frame_selection)")
    check_base_model(own["student_base_model"])
    base = registry.build(own["student_base_model"], num_classes, **rest)
    names, sizes = model_parts.resolve_features(name, True, rest.get("feature_names"),
                                                rest.get("feature_sizes"))
    inputs = model_parts.make_inputs(names, sizes, frame_level=True)
    selected = FrameSelection(own["student_frames"], own["frame_selection"],
                              name="frame_selection")(inputs)
    return keras.Model(inputs=inputs, outputs=base(selected), name=name)


def student_hparams(base_model, base_hparams, student_frames, strategy):
    """The hparams record of a FrameSkippingModel over `base_model` (what train.py writes)."""
    return {**base_hparams, "student_base_model": base_model, "student_frames": int(student_frames),
            "frame_selection": strategy}

