"""Requests to the exported ensemble the way TF Serving's REST API receives them.

REST cannot carry ragged tensors, so every video is padded to the same T (zeros after its last
frame) and carries its `num_frames`. The row format ("instances") is used:

    {"signature_name": "serving_default",
     "instances": [{"rgb": [[...1024 floats...] x T], "audio": [[...128...] x T],
                    "num_frames": 87}, ...]}

`serve_rest_body` decodes such a body and calls the signature as TF Serving would, so the demo
and the tests exercise the exact request format the docs show.
"""
import json

import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf

from yt8m.export import serving
from yt8m.core import errors


def rest_request_body(frames, num_frames, signature_name=serving.SERVING_DEFAULT):
    """JSON text of a row-format request: frames {name: [B, T, D]}, num_frames [B]."""
    num_frames = np.asarray(num_frames)
    instances = []
    for index, count in enumerate(num_frames):
        instance = {name: np.asarray(frames[name][index], np.float32).tolist()
                    for name in serving.FEATURE_NAMES}
        instance["num_frames"] = int(count)
        instances.append(instance)
    return json.dumps({"signature_name": signature_name, "instances": instances})


def serve_rest_body(loaded, body):
    """Runs a row-format request body on a loaded SavedModel; returns {output: numpy array}."""
    request = json.loads(body)
    signature_name = request.get("signature_name", serving.SERVING_DEFAULT)
    if signature_name not in loaded.signatures:
        raise errors.InvalidInputError(
            f"request names signature {signature_name!r}; the export has "
            f"{sorted(loaded.signatures)}")
    instances = request.get("instances")
    if not instances:
        raise errors.InvalidInputError("request body has no 'instances'")
    inputs = {}
    for name in list(serving.FEATURE_NAMES) + ["num_frames"]:
        dtype = tf.int32 if name == "num_frames" else tf.float32
        try:
            inputs[name] = tf.constant([instance[name] for instance in instances], dtype)
        except KeyError:
            raise errors.InvalidInputError(f"a request instance has no {name!r}") from None
        except ValueError as error:  # ragged rows
            raise errors.InvalidInputError(
                f"request input {name!r} is ragged: pad every video to the same "
                f"number of frames and pass num_frames ({error})") from None
    outputs = loaded.signatures[signature_name](**inputs)
    return {name: value.numpy() for name, value in outputs.items()}
