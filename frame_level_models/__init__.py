"""Model classes of yt8m (filled by the model-zoo work)."""
import yt8m  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
