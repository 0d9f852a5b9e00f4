"""distribution.DeviceFeeder / distribute_batch on two logical CPUs (a stand-in for two GPUs):
each replica gets its slice of the batch on its own device, in order, with or without prefetch.

Logical devices must be set before TensorFlow starts, so the checks run in a fresh process.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_SCRIPT = r"""
import json, sys
import yt8m
from yt8m.training import distribution
distribution.configure_cpu_devices(2)
import numpy as np
import tensorflow as tf

report = {}
batches = [{"x": np.arange(8 * 3, dtype=np.float32).reshape(8, 3) + 100 * i,
            "id": np.array([f"b{i}-{j}".encode() for j in range(8)])} for i in range(3)]
dataset = tf.data.Dataset.from_tensor_slices(
    {k: np.stack([b[k] for b in batches]) for k in batches[0]})

mirrored = distribution.make_strategy("mirrored")
feeder = distribution.DeviceFeeder(mirrored, iter(dataset))
first = feeder.next()
feeder.prefetch()
feeder.prefetch()  # a second call keeps the batch already fetched
second, third, end = feeder.next(), feeder.next(), feeder.next()
feeder.prefetch()
report["mirrored"] = [
    [{"device": value.device, "x": value.numpy().tolist(),
      "id": [v.decode() for v in ids.numpy()]}
     for value, ids in zip(batch["x"].values, batch["id"].values)]
    for batch in (first, second, third)]
report["end"] = [end is None, feeder.next() is None]

default = distribution.make_strategy("none")
plain = distribution.distribute_batch(default, {"x": tf.constant(batches[0]["x"])})
report["default"] = {"device": plain["x"].device, "x": plain["x"].numpy().tolist()}
one = distribution.make_strategy("one_device")
placed = distribution.distribute_batch(one, {"x": tf.constant(batches[0]["x"])})
report["one_device"] = {"device": placed["x"].device, "x": placed["x"].numpy().tolist()}
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def report():
    result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def test_each_replica_gets_its_slice_on_its_device_in_order(report):
    for number, replicas in enumerate(report["mirrored"]):
        expected = (np.arange(8 * 3).reshape(8, 3) + 100 * number).tolist()
        assert [replica["device"].split("/")[-1] for replica in replicas] == [
            "device:CPU:0", "device:CPU:1"]
        assert replicas[0]["x"] == expected[:4] and replicas[1]["x"] == expected[4:]
        assert replicas[0]["id"] == [f"b{number}-{j}" for j in range(4)]
        assert replicas[1]["id"] == [f"b{number}-{j}" for j in range(4, 8)]
    assert report["end"] == [True, True]  # the end of the data, also after a prefetch


def test_default_and_one_device_strategies_keep_the_whole_batch(report):
    whole = np.arange(8 * 3).reshape(8, 3).tolist()
    assert report["default"]["x"] == whole and report["one_device"]["x"] == whole
    assert report["one_device"]["device"].endswith("device:CPU:0")

