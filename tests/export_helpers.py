"""Helpers shared by the export tests: what a SavedModel holds, and running it with saved_model_cli."""
import os
import subprocess
import sys

import numpy as np

import yt8m  # noqa: F401
import tensorflow as tf

VENV_BIN = os.path.dirname(sys.executable)


def saved_dtypes(export_dir):
    """{checkpoint key: (dtype, shape)} of the saved variables (the object-graph record excluded)."""
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    return {name: (dtype, shapes[name])
            for name, dtype in reader.get_variable_to_dtype_map().items()
            if not name.startswith("_")}


def tensor_bytes(export_dir):
    """Bytes of the saved variable values (the object-graph record excluded)."""
    return sum(int(np.prod(shape)) * dtype.size
               for dtype, shape in saved_dtypes(export_dir).values())


def saved_model_cli_run(export_dir, inputs, work_dir):
    """Runs serving_default through `saved_model_cli run` (a TF1 session, as TF Serving loads
    a SavedModel) on {name: array}; returns {output name: array}."""
    for name, value in inputs.items():
        np.save(os.path.join(work_dir, f"{name}.npy"), value)
    out_dir = os.path.join(work_dir, "out")
    result = subprocess.run(
        [os.path.join(VENV_BIN, "saved_model_cli"), "run", "--dir", export_dir, "--tag_set",
         "serve", "--signature_def", "serving_default", "--inputs",
         ";".join(f"{name}={os.path.join(work_dir, name)}.npy" for name in inputs), "--outdir",
         out_dir],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    return {name[:-len(".npy")]: np.load(os.path.join(out_dir, name))
            for name in os.listdir(out_dir)}
