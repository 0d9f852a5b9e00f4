"""Inference: predictors and the video-level submission writer (inference.py)."""
