"""Export size: what the variables will take before anything is written, the budget check, and
the size on disk afterwards. One MB here is 2**20 bytes (the challenge's "1 GB uncompressed")."""
import os

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.core import errors
from yt8m.export import precision as precision_lib
from yt8m.export import storage

BYTES_PER_MB = 2 ** 20


class SizeBudgetError(errors.InvalidInputError):
    pass


def variable_bytes(variables, precision, selection, sparse_weights=0.0):
    """Bytes of variable data when `variables` are stored at `precision` (yt8m.export.storage)."""
    return sum(storage.plan(variable, precision, selection, sparse_weights).stored_bytes
               for variable in variables)


def sizes_by_precision(variables, selection, sparse_weights=0.0):
    """{precision: bytes} for float32, float16 and int8 storage of the same variables."""
    return {precision: variable_bytes(variables, precision, selection, sparse_weights)
            for precision in precision_lib.PRECISIONS}


def check_budget(num_bytes, budget_mb, what):
    """Raises SizeBudgetError when `num_bytes` exceeds the budget (--size_budget_mb)."""
    if num_bytes > budget_mb * BYTES_PER_MB:
        raise SizeBudgetError(
            f"{what} would take {num_bytes / BYTES_PER_MB:.2f} MB, over "
            f"--size_budget_mb={budget_mb:g}; drop members, use --precision=float16 or int8 (and "
            "--sparse_weights for pruned members), or pass --select_under_budget with "
            "--tune_weights_on")


def directory_bytes(path):
    """Total size of the files under `path` (the export's size on disk)."""
    total = 0
    for directory, _, file_names in tf.io.gfile.walk(path):
        for name in file_names:
            total += tf.io.gfile.stat(os.path.join(directory, name)).length
    return total
