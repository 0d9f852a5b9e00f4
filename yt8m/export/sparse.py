"""Bit-packed sparse storage of a pruned weight matrix, densified once when the export is loaded.

What the SavedModel holds for a matrix of n elements, nnz of them non-zero (variables, SPEC 6):

    mask_bits  uint8 [ceil(n / 8)]  bit k of byte j is 1 when element 8j + k of the row-major
                                    flattened matrix is non-zero (np.packbits, bitorder "little")
    values     [nnz]                the non-zero elements in row-major order, as the export's
                                    precision stores them: float32, float16 or int8 codes
    scales     float32 [C]          int8 only: the per-output-channel scales of the dense path

That is ceil(n / 8) + nnz * b bytes instead of n * b (b bytes per stored element), so it is
smaller once more than 1 / (8 b) of the elements are zero: 3.1% at float32, 6.25% at float16,
12.5% at int8.

Serving: the dense float32 matrix is rebuilt by TF ops inside the SavedModel (unpack the bits,
scatter the values, cast and scale as the dense precision path does) ONCE, when the export is
loaded, into a resource variable that is not saved: a `TrackableResource` whose initializer runs
after the variables are restored (by tf.saved_model.load, and by the `saved_model_init_op` that TF
Serving and saved_model_cli run). The serving functions read that variable, so a request costs
what it costs with a float32 export and nothing is densified per request.

The dense variable has a shared name made unique per export (a uuid): a variable created inside a
loaded function cannot be anonymous, and names taken from the graph would collide between
matrices. Loading the same export twice in one process therefore shares it (same values), and it
is never destroyed in Python (another load may still read it): it lives as long as the process, or
as the session in TF Serving.
"""
import uuid

import numpy as np

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.export import precision as precision_lib

_BIT_ORDER = "little"
_BITS_PER_BYTE = 8


def pack_mask(mask):
    """bool array (any shape) -> uint8 [ceil(n / 8)]: bit k of byte j = element 8j + k of the
    row-major flattened array."""
    return np.packbits(np.asarray(mask, bool).ravel(), bitorder=_BIT_ORDER)


def unpack_mask(mask_bits, num_elements):
    """uint8 [ceil(n / 8)] -> bool [n] (TF ops; the inverse of `pack_mask`)."""
    shifts = tf.constant(np.arange(_BITS_PER_BYTE, dtype=np.uint8))
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(mask_bits[:, None], shifts), 1)
    return tf.cast(tf.reshape(bits, [-1])[:num_elements], tf.bool)


def densify(mask_bits, values, shape):
    """The dense matrix of `shape` (dtype of `values`) with `values` where the mask bits are set.

    scatter_nd at the positions of the set bits: faster than a gather at the mask's cumulative
    sum (bench/export.py measures both) and correct for an all-zero matrix (no values at all).
    """
    num_elements = int(np.prod(shape))
    positions = tf.where(unpack_mask(mask_bits, num_elements))
    return tf.reshape(tf.scatter_nd(positions, values, [num_elements]), shape)


def sparse_bytes(shape, num_nonzero, precision):
    """Bytes the SavedModel spends on a matrix of `shape` stored sparse at `precision`."""
    num_elements = int(np.prod(shape))
    return (-(-num_elements // _BITS_PER_BYTE)
            + precision_lib.get(precision).stored_bytes(num_nonzero, int(shape[-1])))


class DenseCopy(tf.saved_model.experimental.TrackableResource):
    """The float32 matrix of a SparseWeight, built when the export loads and never saved."""

    def __init__(self, sparse_weight, shape):
        super().__init__()
        self._sparse_weight = sparse_weight  # not tracked: the SparseWeight tracks this resource
        self._shape = tuple(shape)
        self._shared_name = f"yt8m_dense_copy_{uuid.uuid4().hex}"
        self._initialize()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=self._shape,
                                      shared_name=self._shared_name)

    def _initialize(self):
        tf.raw_ops.AssignVariableOp(resource=self.resource_handle,
                                    value=self._sparse_weight.densify())

    def read(self):
        value = tf.raw_ops.ReadVariableOp(resource=self.resource_handle, dtype=tf.float32)
        return tf.ensure_shape(value, self._shape)


class SparseWeight(tf.Module):
    """A float32 matrix stored as mask bits + non-zero values at `precision` (module docstring)."""

    def __init__(self, variable, precision):
        super().__init__(name=None)
        elements, scales = precision_lib.encode(variable.numpy(), precision, variable.name)
        mask = elements != 0  # zeros as stored: weights that round to 0 cost nothing either
        self.shape = tuple(variable.shape.as_list())
        self.mask_bits = tf.Variable(pack_mask(mask), trainable=False,
                                     name=precision_lib.storage_name(variable, "mask_bits"))
        self.values = tf.Variable(elements[mask], trainable=False,
                                  name=precision_lib.storage_name(variable, f"nonzero_{precision}"))
        self.scales = (None if scales is None else
                       tf.Variable(scales, trainable=False,
                                   name=precision_lib.storage_name(variable,
                                                                   f"{precision}_scales")))
        self.dense_copy = DenseCopy(self, self.shape)

    def densify(self):
        """The float32 matrix computed from the stored variables (what the dense copy holds)."""
        return precision_lib.decode(densify(self.mask_bits, self.values, self.shape), self.scales)

    def read(self):
        return self.dense_copy.read()
