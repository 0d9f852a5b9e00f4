"""How each variable of a member is stored in the export, and what that costs.

Three groups:
    float32        kept as it is: biases, batch-norm parameters and statistics, small matrices,
                   and every matrix of a float32 export that is not stored sparse
    low_precision  a large matrix stored densely at --precision (float16 or int8; SPEC 6)
    sparse         a large matrix stored bit-packed (yt8m.export.sparse) with its values at the
                   export's precision: with --sparse_weights=S, when at least the fraction S of its
                   elements is zero as stored, and only if that takes fewer bytes than dense
"Large" is what the export's `precision.Selection` selects: the size rule (rank >= 2,
>= --min_low_precision_elements) or the boliu61 preset (--float16_selection).
The budget's estimate, the report and the module that is saved all follow the same `plan`.
"""
import dataclasses

import numpy as np

import yt8m  # noqa: F401

from yt8m.export import precision as precision_lib
from yt8m.export import sparse as sparse_lib
from yt8m.core import errors

FLOAT32 = "float32"
LOW_PRECISION = "low_precision"
SPARSE = "sparse"
GROUPS = (SPARSE, LOW_PRECISION, FLOAT32)


@dataclasses.dataclass(frozen=True)
class Plan:
    group: str          # FLOAT32, LOW_PRECISION or SPARSE
    precision: str      # of the stored elements
    shape: tuple
    num_zeros: int      # elements that are zero as stored (after rounding to `precision`)
    stored_bytes: int   # what the SavedModel spends on the variable
    dense_bytes: int    # the same variable stored densely at `precision`

    @property
    def num_elements(self):
        return int(np.prod(self.shape))


def check_sparse_weights(sparse_weights):
    if not 0.0 <= sparse_weights <= 1.0:
        raise errors.InvalidInputError(
            f"--sparse_weights must be a fraction of zeros in [0, 1] (0: off), got "
            f"{sparse_weights:g}")
    return sparse_weights


def _stored_nonzero(values, precision):
    """Elements of `values` that are not zero once stored at `precision`. Counted without the
    float16 range check: sizes are computed for every precision, the check belongs to the export."""
    return int(np.count_nonzero(precision_lib.get(precision).quantize(values)[0]))


def plan(variable, precision, selection, sparse_weights=0.0):
    """The storage of `variable` in an export at `precision` (see the module docstring);
    selection: a precision.Selection, or the minimum element count of the size rule."""
    shape = tuple(variable.shape.as_list())
    num_elements = int(np.prod(shape))
    values = variable.numpy()
    if not precision_lib.as_selection(selection).selects(variable):
        size = num_elements * variable.dtype.size
        return Plan(FLOAT32, variable.dtype.name, shape,
                    num_elements - int(np.count_nonzero(values)), size, size)
    dense_group = FLOAT32 if precision == precision_lib.FLOAT32 else LOW_PRECISION
    dense_bytes = precision_lib.stored_bytes(shape, precision)
    # Without sparse storage the zeros are only reported: the float32 ones are enough.
    nonzero = (_stored_nonzero(values, precision) if sparse_weights > 0
               else int(np.count_nonzero(values)))
    sparse_bytes = sparse_lib.sparse_bytes(shape, nonzero, precision)
    if (sparse_weights > 0 and num_elements - nonzero >= sparse_weights * num_elements
            and sparse_bytes < dense_bytes):
        return Plan(SPARSE, precision, shape, num_elements - nonzero, sparse_bytes, dense_bytes)
    return Plan(dense_group, precision, shape, num_elements - nonzero, dense_bytes, dense_bytes)


def make_stored_weight(variable, storage_plan):
    """The tf.Module holding `variable` as planned, or None when it stays a float32 variable."""
    if storage_plan.group == SPARSE:
        return sparse_lib.SparseWeight(variable, storage_plan.precision)
    if storage_plan.group == LOW_PRECISION:
        return precision_lib.make_stored_weight(variable, storage_plan.precision)
    return None


def group_totals(plans):
    """{group: {tensors, elements, sparsity, stored_bytes, dense_bytes, float32_bytes}} over the
    plans of one member (groups without a tensor left out)."""
    totals = {}
    for group in GROUPS:
        members = [item for item in plans if item.group == group]
        if not members:
            continue
        elements = sum(item.num_elements for item in members)
        totals[group] = {
            "tensors": len(members), "elements": elements,
            "sparsity": sum(item.num_zeros for item in members) / max(elements, 1),
            "stored_bytes": sum(item.stored_bytes for item in members),
            "dense_bytes": sum(item.dense_bytes for item in members),
            "float32_bytes": 4 * elements}
    return totals
