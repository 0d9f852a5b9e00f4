"""`make demo`'s export step: float16 ensemble of the demo models, reloaded, one REST request."""
import os

import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf

from yt8m.export import exporter
from yt8m.export import precision as precision_lib
from yt8m.export import requests
from yt8m.export import validation_data


def demo_export(train_dirs, output_dir, eval_data_pattern="", precision=precision_lib.FLOAT16,
                weights=None, min_low_precision_elements=precision_lib.DEFAULT_MIN_ELEMENTS,
                size_budget_mb=1024.0):
    """Exports `train_dirs` as one ensemble, reloads it and serves one video through the REST
    request format (padded frames + num_frames).

    Returns {"report": export report, "export_dir": str, "request_body_bytes": int,
    "video_id": str, "labels": [int] (the video's true classes; [] for the random video used
    without eval data), "top_classes": [int], "top_scores": [float]} (the request's answer).
    """
    report = exporter.export_ensemble(exporter.ExportConfig(
        members=list(train_dirs), output_dir=output_dir, weights=weights, precision=precision,
        eval_data_pattern=eval_data_pattern, min_low_precision_elements=min_low_precision_elements,
        size_budget_mb=size_budget_mb, overwrite=True))
    loaded = tf.saved_model.load(output_dir)
    if eval_data_pattern:
        batch = next(iter(validation_data.frame_batches(
            eval_data_pattern, "eval_data_pattern", 1, 1, report["num_classes"],
            report["max_frames"])))
        video_id = batch["id"][0].numpy().decode("utf-8")
        labels = [int(index) for index in np.flatnonzero(batch["labels"][0].numpy())]
        frames = {name: batch[name] for name in requests.serving.FEATURE_NAMES}
        num_frames = batch["num_frames"]
    else:
        video_id, labels = "random", []
        frames, num_frames = validation_data.random_videos(1, report["max_frames"])
    body = requests.rest_request_body(frames, num_frames)
    response = requests.serve_rest_body(loaded, body)
    return {"report": report, "export_dir": os.path.abspath(output_dir),
            "request_body_bytes": len(body), "video_id": video_id, "labels": labels,
            "top_classes": [int(c) for c in response["top_k_classes"][0]],
            "top_scores": [float(s) for s in np.asarray(response["top_k_scores"][0])]}
