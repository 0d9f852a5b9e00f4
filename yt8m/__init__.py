"""yt8m: YouTube-8M video classification on TensorFlow 2 with the Keras 2 API (tf_keras).

Importing this package makes `tf.keras` resolve to tf_keras: TF_USE_LEGACY_KERAS must be set
before TensorFlow is first imported, and every module of the project imports `yt8m` first.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
