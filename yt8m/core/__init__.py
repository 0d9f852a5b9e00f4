"""Shared low-level helpers of yt8m; imports only the standard library, absl, numpy, TensorFlow."""
