"""yt8m: YouTube-8M video classification on TensorFlow 2 / tf_keras."""
from setuptools import find_packages, setup

setup(
    name="yt8m",
    version="0.1.0",
    description="YouTube-8M video classification: starter baselines, NetVLAD, NeXtVLAD, "
    "MixNeXtVLAD/MOD online distillation, distillation toolkit and float16 ensemble export.",
    python_requires=">=3.11",
    packages=find_packages(include=["yt8m", "yt8m.*", "frame_level_models", "frame_level_models.*"]),
    py_modules=["train", "eval", "inference", "export_ensemble"],
    install_requires=[
        "tensorflow~=2.21.0",
        "tf-keras~=2.21.0",
        "tensorflow-model-optimization~=0.8.1",
        "tensorboard>=2.20",
        "numpy>=1.26,<3",
        "absl-py>=1.2",
        "pandas>=2.2",
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
        # Batch inference on Apache Beam (yt8m.beam_inference). The tfrecord extra brings a CRC
        # implementation ReadFromTFRecord needs; google-crc32c is the fast one.
        "beam": ["apache-beam[tfrecord]>=2.77,<3", "google-crc32c>=1.5"],
    },
)
