"""A predictor (batch -> predictions) over an exported ensemble, for inference.py --saved_model_dir.

The export describes itself (`num_classes`, `max_frames` variables), so no train dir is needed to
read the test files.
"""
import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.export import serving
from yt8m.core.config import DataConfig
from yt8m.core import errors


def load_saved_model_predictor(saved_model_dir, num_readers=1):
    """Returns (predict_batch, data_config) for the SavedModel written by export_ensemble.py."""
    if not tf.io.gfile.exists(saved_model_dir + "/saved_model.pb"):
        raise errors.MissingInputError(
            f"--saved_model_dir={saved_model_dir!r} holds no saved_model.pb "
            "(write one with export_ensemble.py)")
    loaded = tf.saved_model.load(saved_model_dir)
    if serving.SERVING_DEFAULT not in loaded.signatures or not hasattr(loaded, "num_classes"):
        raise errors.InvalidInputError(
            f"--saved_model_dir={saved_model_dir!r} is not an export of "
            "export_ensemble.py (no serving_default signature or num_classes)")
    signature = loaded.signatures[serving.SERVING_DEFAULT]
    data_config = DataConfig(
        feature_names=tuple(serving.FEATURE_NAMES),
        feature_sizes=tuple(serving.FEATURE_SIZES[name] for name in serving.FEATURE_NAMES),
        frame_features=True, num_classes=int(loaded.num_classes.numpy()),
        max_frames=int(loaded.max_frames.numpy()), num_readers=int(num_readers))

    def predict_batch(batch):
        outputs = signature(**{name: batch[name] for name in serving.FEATURE_NAMES},
                            num_frames=batch["num_frames"])
        return outputs["predictions"]

    predict_batch.saved_model = loaded  # keeps the loaded object (and its variables) alive
    return predict_batch, data_config
