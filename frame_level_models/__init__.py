"""The yt8m model zoo: `build(name, num_classes, **hparams)` returns a tf_keras model.

    import frame_level_models
    model = frame_level_models.build("NeXtVLADModel", 3862, nextvlad_cluster_size=64)
    outputs = model({"rgb": rgb, "audio": audio, "num_frames": num_frames})
    outputs["predictions"], outputs["logits"], outputs["embedding"]

Each model module registers its builder and its hyper-parameter rows (names, defaults, flags);
`frame_level_models.hparams` holds the table. Composite models (mixtures, MOD trees, the
frame-skipping student) live in `frame_level_models.composite`.
"""
import yt8m  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

from frame_level_models import hparams
from frame_level_models.registry import (build, canonical_name, hparam_names, is_frame_level,
                                         model_names, places_sub_models)
# Importing the model modules registers them (in this order: MODEL_NAMES lists them so).
from frame_level_models import video_models  # noqa: F401
from frame_level_models import logistic_frame_model  # noqa: F401
from frame_level_models import dbof_model  # noqa: F401
from frame_level_models import lstm_model  # noqa: F401
from frame_level_models import netvlad_model  # noqa: F401
from frame_level_models import nextvlad_model  # noqa: F401
from frame_level_models import netfv_model  # noqa: F401
from frame_level_models import soft_dbof_model  # noqa: F401
from frame_level_models import gated_dbof_model  # noqa: F401
from frame_level_models import gru_model  # noqa: F401
from frame_level_models.composite import mixture_models  # noqa: F401
from frame_level_models import hierarchical_lstm  # noqa: F401
from frame_level_models.composite import frame_skipping  # noqa: F401
from frame_level_models import pruning  # noqa: F401  (its flag rows)

MODEL_NAMES = model_names()

__all__ = ["build", "canonical_name", "hparams", "hparam_names", "is_frame_level", "model_names",
           "MODEL_NAMES", "places_sub_models"]
