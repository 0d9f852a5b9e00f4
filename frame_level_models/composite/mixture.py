"""A gated mixture of models trained with online distillation (MixNeXtVLAD; MOD paper eq. 6).

`MixtureModel` holds m branch models: any model of the zoo (outputs with `logits`), or other
MixtureModels, which makes a MOD tree a mixture of mixtures (mod_tree.py builds them). Its config
holds its branches' configs, so it clones and saves (.keras) like a functional model.

  gate      w = softmax(dense(BN(mean of the valid frames), m) + b)    [B, m]
  mixture   z = sum_i w_i z_i,  predictions = sigmoid(z)
  loss      L(y, sigmoid(z))                        (the trainer's label loss L)
            + sum_i L(y, sigmoid(z_i))     (`auxiliary_predictions`, recursively for sub-mixtures)
            + penalty * lambda * mean_batch sum_i KL(softmax(z/T) || softmax(z_i/T))
                                           (`regularization_terms`; skipped when T = 0)

as linrongc's and MOD's train.py: the branches are `aux_predictions` scored with --label_loss, the
KL is the model's `regularization_loss`, multiplied by --regularization_penalty. The KL is the
reference's, on probabilities with epsilon 1e-8 in the logs (`KL_EPSILON`), and the trainer's
cross-entropy uses linrongc's epsilon 1e-8 for the mixtures (registry `loss_epsilon`).

Outputs: `predictions`, `logits`, `gate_weights` [B, m], `branch_logits` [B, m, V]; a sub-mixture's
entries come back under its path ("branch_logits/2" = the logits of the branches of branch 2,
"gate_weights/2/0", ...), so the root's `auxiliary_loss` sees the whole tree.

Defects of the reference code this does not repeat (SPEC 4): every regularisation loss is counted
once (`losses` visits each branch once), the gate's BN statistics are updated (Keras BN in training
mode), and the gate mean ignores padded frames (masked by num_frames). As in the reference, the gate
has a bias and no L2, and with reverse whitening (NeXtVLAD's --pca_eigenvalues_file) it reads the
whitened rgb.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from frame_level_models.composite import placement
from frame_level_models.layers import common
from frame_level_models.layers.frame_ops import MaskedMean
from yt8m import losses as losses_lib
from yt8m.core.training_protocol import TrainingModel
from yt8m.core import errors

NUM_FRAMES = "num_frames"
BRANCH_LOGITS = "branch_logits"
GATE_WEIGHTS = "gate_weights"

# linrongc's (and MOD's) distillation KL: log(q + 1e-8) - log(p + 1e-8).
KL_EPSILON = losses_lib.LINRONGC_EPSILON


def child_key(key, index):
    """A branch's output key as seen from its parent: 'branch_logits' -> 'branch_logits/1',
    'branch_logits/0' -> 'branch_logits/1/0'."""
    name, _, rest = key.partition("/")
    return f"{name}/{index}" + (f"/{rest}" if rest else "")


def input_specs(model):
    """{input name: shape without the batch axis} of a model taking a dict of inputs."""
    if isinstance(model, MixtureModel):
        return dict(model.input_specs)
    nested = getattr(model, "input", None)
    if not isinstance(nested, dict):
        raise ValueError(f"branch model {model.name!r} must take a dict of named inputs (features "
                         "and num_frames), as the models of frame_level_models do")
    return {name: tuple(tensor.shape[1:]) for name, tensor in nested.items()}


@keras.utils.register_keras_serializable(package="yt8m")
class MixtureGate(common.BatchNormLayer):
    """w = softmax(dense(BN(x), m)): a weight per branch and video. As the reference's
    `mix_weights`: variance-scaling init, a bias, no L2 (l2_penalty > 0 adds one on the kernel)."""

    def __init__(self, num_branches, l2_penalty=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.num_branches = int(num_branches)
        self.l2_penalty = float(l2_penalty)
        self.use_bias = bool(use_bias)
        self.norm = self.make_batch_norm("gate_bn")
        self.dense = keras.layers.Dense(self.num_branches, use_bias=self.use_bias,
                                        kernel_initializer=common.he_normal(),
                                        kernel_regularizer=common.slim_l2(self.l2_penalty),
                                        name="gate_dense")

    def build(self, input_shape):
        self.norm.build(input_shape)
        self.dense.build(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        # float32 under mixed precision: the weights scale the branches' float32 logits.
        return common.softmax(self.dense(self.norm(inputs, training=training)), axis=-1,
                              dtype=tf.float32)

    def get_config(self):
        return {**super().get_config(), "num_branches": self.num_branches,
                "l2_penalty": self.l2_penalty, "use_bias": self.use_bias}


@keras.utils.register_keras_serializable(package="yt8m")
class MixtureModel(TrainingModel, keras.Model):
    """Gated mixture of `branches` with online distillation from the mixture to each branch.

    Args:
      branches: built models (zoo models whose outputs include `logits`, or MixtureModels), all
        taking the same inputs. Their weights already exist; to place branch i on a device, build it
        under `tf.device(branch_devices[i])` and pass the same device here.
      num_classes: V.
      temperature: T of the distillation term; 0 disables it.
      distill_lambda: lambda, the weight of the distillation term (the references use T^2).
      stop_teacher_gradient: stop the gradient of the KL term on the mixture (teacher) side. The
        reference code does not (default False).
      branch_devices: one device name (or None: the caller's scope) per branch.
      gate_l2_penalty: starter-convention L2 on the gate's kernel.
      gate_bias: whether the gate's dense layer has a bias (the reference's has).
      bn_momentum: momentum of the gate's batch norm.
      gate_whitening: {"feature": name, "layer": a frame_ops.ReverseWhitening} or None: the gate
        reads that feature reverse-whitened, as the branches do (linrongc's gate reads the
        whitened input).
    """

    def __init__(self, branches, num_classes, temperature=0.0, distill_lambda=0.0,
                 stop_teacher_gradient=False, branch_devices=None, gate_l2_penalty=0.0,
                 bn_momentum=common.BN_MOMENTUM, gate_bias=True, gate_whitening=None, **kwargs):
        super().__init__(**kwargs)
        branches = list(branches)
        if not branches:
            raise ValueError("a MixtureModel needs at least one branch")
        if temperature < 0:
            raise ValueError(f"cl_temperature must be >= 0 (0 disables distillation), "
                             f"got {temperature}")
        branch_devices = list(branch_devices or [None] * len(branches))
        if len(branch_devices) != len(branches):
            raise ValueError(f"{len(branches)} branches but {len(branch_devices)} branch devices")
        placement.check_strategy_allows_placement(branch_devices)
        specs = input_specs(branches[0])
        for branch in branches[1:]:
            if input_specs(branch) != specs:
                raise ValueError(f"branch {branch.name!r} takes inputs {input_specs(branch)}, "
                                 f"branch {branches[0].name!r} takes {specs}; they must agree")
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.distill_lambda = float(distill_lambda)
        self.stop_teacher_gradient = bool(stop_teacher_gradient)
        self.branch_models = branches
        # Device names are settings, not state: keep them out of the checkpoint's object graph so a
        # sub-tree saved alone has the same structure as inside the tree.
        object.__setattr__(self, "_branch_devices", tuple(branch_devices))
        object.__setattr__(self, "input_specs", dict(specs))
        self._feature_names = tuple(sorted(name for name in specs if name != NUM_FRAMES))
        self._frame_level = NUM_FRAMES in specs
        self.gate = MixtureGate(len(branches), gate_l2_penalty, use_bias=gate_bias,
                                bn_momentum=bn_momentum, name="gate")
        whitened_feature, self.gate_whitening = self._whitening(gate_whitening)
        object.__setattr__(self, "_whitened_feature", whitened_feature)  # a setting, not state
        gate_size = sum(int(specs[name][-1]) for name in self._feature_names)
        # Create the gate's weights now (not at the first call): a checkpoint can then be restored
        # into a freshly built model at once, and the weights land under the caller's device.
        self.gate.build(tf.TensorShape([None, gate_size]))
        self.masked_mean = MaskedMean(name="gate_input_mean")

    def _whitening(self, gate_whitening):
        """(feature name, layer) from the gate_whitening argument (a layer or its config)."""
        if not gate_whitening:
            return None, None
        feature, layer = gate_whitening["feature"], gate_whitening["layer"]
        if feature not in self._feature_names or not self._frame_level:
            raise ValueError(f"gate_whitening names feature {feature!r}; the mixture's frame "
                             f"features are {list(self._feature_names)}")
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        return feature, layer

    @property
    def branch_devices(self):
        return self._branch_devices

    def get_config(self):
        return {"name": self.name, "num_classes": self.num_classes,
                "branches": [keras.saving.serialize_keras_object(branch)
                             for branch in self.branch_models],
                "temperature": self.temperature, "distill_lambda": self.distill_lambda,
                "stop_teacher_gradient": self.stop_teacher_gradient,
                "branch_devices": list(self.branch_devices),
                "gate_l2_penalty": self.gate.l2_penalty, "gate_bias": self.gate.use_bias,
                "bn_momentum": self.gate.bn_momentum,
                "gate_whitening": None if self.gate_whitening is None else {
                    "feature": self._whitened_feature,
                    "layer": keras.saving.serialize_keras_object(self.gate_whitening)}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        branch_configs = config.pop("branches")
        devices = config.get("branch_devices") or [None] * len(branch_configs)
        branches = []
        for branch_config, device in zip(branch_configs, devices):
            with placement.device_scope(device):  # the branch's weights on the branch's device
                branches.append(keras.saving.deserialize_keras_object(
                    branch_config, custom_objects=custom_objects))
        return cls(branches, **config)

    @property
    def is_model_parallel(self):
        """True when the branches are placed on devices of their own (the trainer then clips and
        updates each variable on its device)."""
        return any(self._branch_devices)

    def gate_inputs(self, inputs):
        """The concatenated features (the gate_whitening feature reverse-whitened) averaged over
        each video's valid frames (padding ignored)."""
        features = []
        for name in self._feature_names:
            feature = tf.cast(inputs[name], tf.float32)
            if name == self._whitened_feature:
                feature = self.gate_whitening([feature, inputs[NUM_FRAMES]])
            features.append(feature)
        features = tf.concat(features, axis=-1)
        if not self._frame_level:
            return features
        return self.masked_mean([features, inputs[NUM_FRAMES]])

    def call(self, inputs, training=None):
        branch_outputs = []
        for branch, device in zip(self.branch_models, self.branch_devices):
            with placement.device_scope(device):
                outputs = branch(inputs, training=training)
            if not isinstance(outputs, dict) or "logits" not in outputs:
                raise ValueError(f"branch model {branch.name!r} has no 'logits' output; a mixture "
                                 "combines the branches' logits")
            branch_outputs.append(outputs)
        weights = self.gate(self.gate_inputs(inputs), training=training)
        # The mixture in float32 (the zoo's models return float32 under any policy).
        branch_logits = tf.stack([tf.cast(outputs["logits"], tf.float32)
                                  for outputs in branch_outputs], axis=1)
        logits = tf.einsum("bm,bmv->bv", weights, branch_logits)
        result = {"predictions": tf.sigmoid(logits), "logits": logits, GATE_WEIGHTS: weights,
                  BRANCH_LOGITS: branch_logits}
        for index, (branch, outputs) in enumerate(zip(self.branch_models, branch_outputs)):
            if isinstance(branch, MixtureModel):
                for key, value in outputs.items():
                    if key.startswith((BRANCH_LOGITS, GATE_WEIGHTS)):
                        result[child_key(key, index)] = value
        return result

    def _nodes(self, outputs, path="", logits=None, device=None):
        """[(mixture, its device, its logits, its branch logits)] of this mixture and every
        sub-mixture below it, root first; `device` is where the node runs (a sub-tree's device)."""
        logits = outputs["logits"] if logits is None else logits
        branch_logits = tf.unstack(outputs[BRANCH_LOGITS + path], axis=1)
        nodes = [(self, device, logits, branch_logits)]
        for index, branch in enumerate(self.branch_models):
            if isinstance(branch, MixtureModel):
                nodes += branch._nodes(outputs, f"{path}/{index}", branch_logits[index],
                                       self.branch_devices[index] or device)
        return nodes

    def auxiliary_predictions(self, outputs):
        """(sigmoid(z_i), z_i) of every branch of every mixture of the tree (the sub-mixtures'
        and the leaves'), each computed on its branch's device."""
        pairs = []
        for node, device, _, branch_logits in self._nodes(outputs):
            for branch_device, logits in zip(node.branch_devices, branch_logits):
                with placement.device_scope(branch_device or device):
                    pairs.append((tf.sigmoid(logits), logits))
        return pairs

    def regularization_terms(self, outputs):
        """lambda * mean_batch sum_i KL(softmax(z/T) || softmax(z_i/T)) of every mixture of the
        tree, each with its level's temperature and lambda (none where T = 0), each computed on
        its mixture's device."""
        total = tf.constant(0.0)
        for node, device, logits, branch_logits in self._nodes(outputs):
            if node.temperature > 0:
                with placement.device_scope(device):
                    teacher = tf.stop_gradient(logits) if node.stop_teacher_gradient else logits
                    total += node.distill_lambda * losses_lib.mixture_kl(
                        teacher, branch_logits, node.temperature, epsilon=KL_EPSILON)
        return total

    @property
    def losses(self):
        """Regularisation losses, each branch's evaluated on the branch's device (an L2 term read
        on another device would copy the whole weight matrix there every step)."""
        collected = list(self.gate.losses)
        for branch, device in zip(self.branch_models, self.branch_devices):
            with placement.device_scope(device):
                collected.extend(branch.losses)
        return collected

    def compute_gradients(self, tape, loss, variables):
        """Gradients of `loss` with each gradient op on the device of the forward op it comes
        from, so every sub-tree's backward pass runs on the sub-tree's device.

        Inside a tf.function this uses tf.gradients, which colocates gradients with their forward
        ops (GradientTape.gradient leaves them unplaced: they would all run on the first device).
        Eagerly, or when nothing is placed, it is plain tape.gradient.
        """
        if self.is_model_parallel and tf.inside_function():
            return tf.gradients(loss, variables)
        return tape.gradient(loss, variables)

    def subtree(self, path):
        """The branch at `path` (a sequence of 0-based branch indices, root first)."""
        node = self
        for depth, index in enumerate(path):
            if not isinstance(node, MixtureModel):
                raise errors.InvalidInputError(
                    f"path {list(path)}: the node at depth {depth} is a leaf "
                    f"({node.name}); it has no branches")
            if not 0 <= index < len(node.branch_models):
                raise errors.InvalidInputError(
                    f"path {list(path)}: index {index} at depth {depth} is out of "
                    f"range; that mixture has {len(node.branch_models)} branches "
                    f"(0..{len(node.branch_models) - 1})")
            node = node.branch_models[index]
        return node
