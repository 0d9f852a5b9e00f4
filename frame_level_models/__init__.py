"""The yt8m model zoo: `build(name, num_classes, **hparams)` returns a functional tf_keras model.

    import frame_level_models
    model = frame_level_models.build("NeXtVLADModel", 3862, nextvlad_cluster_size=64)
    outputs = model({"rgb": rgb, "audio": audio, "num_frames": num_frames})
    outputs["predictions"], outputs["logits"], outputs["embedding"]

Hyper-parameters (names, defaults, flags) live in `frame_level_models.hparams`.
"""
import yt8m  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

from frame_level_models import hparams
from frame_level_models.registry import build, hparam_names, is_frame_level, model_names
# Importing the model modules registers them (in this order: MODEL_NAMES lists them so).
from frame_level_models import video_models  # noqa: F401
from frame_level_models import logistic_frame_model  # noqa: F401
from frame_level_models import dbof_model  # noqa: F401
from frame_level_models import lstm_model  # noqa: F401
from frame_level_models import netvlad_model  # noqa: F401
from frame_level_models import nextvlad_model  # noqa: F401
# Mixtures and MOD trees of the models above (yt8m.distillation): whole-model factories.
from frame_level_models import registry as _registry  # noqa: E402
from yt8m.distillation import zoo_registration as _mixtures  # noqa: E402
_mixtures.register(_registry)
# The frame-skipping paper's teacher, and the frame-skipping student wrapper (yt8m.distillation).
from frame_level_models import hierarchical_lstm  # noqa: F401,E402
from yt8m.distillation import frame_skipping as _frame_skipping  # noqa: E402
_frame_skipping.register(_registry)

MODEL_NAMES = model_names()

__all__ = ["build", "hparams", "hparam_names", "is_frame_level", "MODEL_NAMES"]
