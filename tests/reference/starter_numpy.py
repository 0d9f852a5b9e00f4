"""The YouTube-8M starter code (google/youtube-8m @ e6f6bf68, Oct 2019) re-stated in numpy.

Models (video_level_models.py, frame_level_models.py), the input normalisation of train.py /
eval.py / export_model.py, the losses (losses.py), the optimizer arithmetic of the TF1 classes the
starter instantiates with `optimizer_class(learning_rate)`, the tower gradient merge and clipping
(utils.combine_gradients, utils.clip_gradient_norms), the learning-rate schedule (train.py
build_graph), and inference.py's segment mode (get_segments, format_lines, the per-class heaps).

Weight keys are the starter's variable names below the `tower/` scope, e.g. for DbofModel at the
defaults: input_bn/*, cluster_weights [1152, 8192], cluster_bn/*, hidden1_weights [8192, 1024],
hidden1_bn/*, gates/weights [1024, 3862*3], experts/weights [1024, 3862*2], experts/biases [7724].
"""
import heapq

import numpy as np

from reference import common

# ----------------------------------------------------------------------------- input


def starter_input(raw):
    """train.py / eval.py / export_model.py: tf.nn.l2_normalize(model_input_raw, feature_dim) with
    feature_dim the last axis of the CONCATENATED features (1152 per frame for rgb,audio, or the
    mean_rgb ++ mean_audio vector at video level). Zero (padded) frames stay zero."""
    return common.l2_normalize(raw, axis=-1)


# ----------------------------------------------------------------------------- classifiers


def logistic_model(x, weights, scope="fully_connected"):
    """video_level_models.LogisticModel: sigmoid(x W + b) via slim.fully_connected (Xavier init,
    biases zeros, L2 l2_penalty=1e-8 on W only). Variables <scope>/weights [D, V],
    <scope>/biases [V]."""
    return common.sigmoid(common.dense(x, weights, scope))


def moe_model(x, weights, num_mixtures=2, prefix=""):
    """video_level_models.MoeModel (M = --moe_num_mixtures, default 2).

    gates/weights [D, V*(M+1)] (no bias), experts/weights [D, V*M], experts/biases [V*M]. The
    activations are reshaped row-major to [B*V, M+1] / [B*V, M]: class c owns columns
    c*(M+1) ... c*(M+1)+M of the gate matrix and c*M ... c*M+M-1 of the expert matrix.
    p = sum_{m<M} softmax(gates)[m] * sigmoid(experts)[m]; the (M+1)-th slot is the dummy expert.
    """
    x = common.as_float(x)
    gate_activations = common.dense(x, weights, prefix + "gates", bias=False)
    expert_activations = common.dense(x, weights, prefix + "experts")
    batch = x.shape[0]
    gating = common.softmax(gate_activations.reshape(-1, num_mixtures + 1))
    experts = common.sigmoid(expert_activations.reshape(-1, num_mixtures))
    probabilities = np.sum(gating[:, :num_mixtures] * experts, axis=1)
    return probabilities.reshape(batch, -1)


def video_level_classifier(x, weights, classifier, num_mixtures=2):
    """frame_level_models: getattr(video_level_models, FLAGS.video_level_classifier_model)."""
    if classifier == "MoeModel":
        return moe_model(x, weights, num_mixtures)
    if classifier == "LogisticModel":
        return logistic_model(x, weights)
    raise ValueError(f"unknown video_level_classifier_model {classifier!r}")


# ----------------------------------------------------------------------------- frame-level models


def frame_level_logistic_model(frames, num_frames, weights):
    """frame_level_models.FrameLevelLogisticModel: sum of ALL T frames / num_frames (padded frames
    are zero after the input normalisation), then slim.fully_connected(sigmoid, L2 1e-8):
    fully_connected/weights [F, V], fully_connected/biases [V]."""
    frames = common.as_float(frames)
    denominators = common.as_float(num_frames).reshape(-1, 1)
    return logistic_model(np.sum(frames, axis=1) / denominators, weights)


DBOF_ACTIVATIONS = {"sigmoid": common.sigmoid, "relu6": common.relu6}


def dbof_model(frames, num_frames, weights, frame_index=None, add_batch_norm=True,
               dbof_activation="sigmoid", pooling_method="max",
               video_level_classifier_model="MoeModel", num_mixtures=2, bn_training=False):
    """frame_level_models.DbofModel (one DBoF over the concatenated 1152-d frames).

    Order: sample `iterations` frames (SampleRandomFrames by default, SampleRandomSequence with
    --sample_random_frames=False; here `frame_index` [B, n], None = every given frame)
    -> rows [B*n, F] -> input_bn -> @ cluster_weights [F, C] -> cluster_bn (else + cluster_biases)
    -> act -> [B, n, C] -> max (or average) over the n frames -> @ hidden1_weights [C, H]
    -> hidden1_bn (else + hidden1_biases) -> act -> video-level classifier (MoeModel default).
    act = --dbof_activation (sigmoid default, or relu6). num_frames only drives the sampling.
    """
    del num_frames  # used by the sampling, which frame_index replaces
    act = DBOF_ACTIVATIONS[dbof_activation]
    sampled = common.maybe_sample(frames, frame_index)
    batch, count, feature_size = sampled.shape
    rows = sampled.reshape(-1, feature_size)
    if add_batch_norm:
        rows = common.batch_norm(rows, weights, "input_bn", bn_training)
    activation = rows @ common.as_float(weights["cluster_weights"])
    if add_batch_norm:
        activation = common.batch_norm(activation, weights, "cluster_bn", bn_training)
    else:
        activation = activation + common.as_float(weights["cluster_biases"])
    activation = act(activation).reshape(batch, count, -1)
    if pooling_method == "max":
        activation = np.max(activation, axis=1)
    elif pooling_method == "average":
        activation = np.mean(activation, axis=1)
    else:
        raise ValueError(f"unknown dbof_pooling_method {pooling_method!r}")
    activation = activation @ common.as_float(weights["hidden1_weights"])
    if add_batch_norm:
        activation = common.batch_norm(activation, weights, "hidden1_bn", bn_training)
    else:
        activation = activation + common.as_float(weights["hidden1_biases"])
    activation = act(activation)
    return video_level_classifier(activation, weights, video_level_classifier_model, num_mixtures)


def basic_lstm_cell(x, state, kernel, bias, forget_bias=1.0):
    """tf.contrib.rnn.BasicLSTMCell (activation tanh): z = [x, h] @ kernel + bias, kernel
    [input + units, 4*units]; i, j, f, o = split(z, 4) in that order;
    c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j); h' = tanh(c') * sigmoid(o).
    The forget bias is a constant added at every step (the bias variable starts at zero)."""
    c, h = state
    z = np.concatenate([common.as_float(x), h], axis=1) @ common.as_float(kernel)
    z = z + common.as_float(bias)
    i, j, f, o = np.split(z, 4, axis=1)
    new_c = c * common.sigmoid(f + forget_bias) + common.sigmoid(i) * np.tanh(j)
    new_h = np.tanh(new_c) * common.sigmoid(o)
    return new_c, new_h


def gru_cell(x, h, gates_kernel, gates_bias, candidate_kernel, candidate_bias):
    """tf.contrib.rnn.GRUCell (activation tanh): r, u = split(sigmoid([x, h] @ gates/kernel +
    gates/bias), 2) in that order; c = tanh([x, r*h] @ candidate/kernel + candidate/bias);
    h' = u * h + (1 - u) * c. gates/kernel [input + units, 2*units] (bias initialised to 1.0),
    candidate/kernel [input + units, units]."""
    x = common.as_float(x)
    value = common.sigmoid(np.concatenate([x, h], axis=1) @ common.as_float(gates_kernel)
                           + common.as_float(gates_bias))
    r, u = np.split(value, 2, axis=1)
    candidate = np.tanh(np.concatenate([x, r * h], axis=1) @ common.as_float(candidate_kernel)
                        + common.as_float(candidate_bias))
    return u * h + (1.0 - u) * candidate


def run_dynamic_rnn(frames, sequence_length, layers):
    """tf.nn.dynamic_rnn(MultiRNNCell(layers), frames, sequence_length): every layer steps through
    t < sequence_length[b]; afterwards the state is copied through unchanged, so the final state is
    the one after each video's last valid step (the initial zeros when sequence_length is 0).

    layers: list of (step_fn, initial_state_fn) with step_fn(x, state) -> (output, state) and
    initial_state_fn(batch) -> state. Returns the list of final per-layer states."""
    frames = common.as_float(frames)
    batch, steps = frames.shape[:2]
    lengths = np.asarray(sequence_length).reshape(-1)
    states = [init(batch) for _, init in layers]
    for t in range(steps):
        active = (t < lengths)[:, None]
        x = frames[:, t]
        for index, (step, _) in enumerate(layers):
            output, new_state = step(x, states[index])
            states[index] = tuple(np.where(active, new, old)
                                  for new, old in zip(new_state, states[index]))
            x = output
    return states


def lstm_layers(weights, prefix, num_layers, units, forget_bias=1.0):
    """(step, init) pairs of BasicLSTMCell layers whose variables are
    <prefix>multi_rnn_cell/cell_<i>/basic_lstm_cell/{kernel,bias}."""
    def make(index):
        scope = f"{prefix}multi_rnn_cell/cell_{index}/basic_lstm_cell/"
        kernel, bias = weights[scope + "kernel"], weights[scope + "bias"]

        def step(x, state):
            c, h = basic_lstm_cell(x, state, kernel, bias, forget_bias)
            return h, (c, h)
        return step, lambda batch: (np.zeros((batch, units)), np.zeros((batch, units)))
    return [make(index) for index in range(num_layers)]


def lstm_model(frames, num_frames, weights, lstm_cells=1024, lstm_layers_count=2,
               video_level_classifier_model="MoeModel", num_mixtures=2):
    """frame_level_models.LstmModel: MultiRNNCell of --lstm_layers BasicLSTMCell(--lstm_cells,
    forget_bias=1.0) over all frames of the concatenated 1152-d input with sequence_length =
    num_frames (no frame sampling); the classifier reads state[-1].h, the LAST layer's h at the last
    valid frame (1024-d). Variables rnn/multi_rnn_cell/cell_<i>/basic_lstm_cell/{kernel,bias}:
    cell_0 kernel [1152 + 1024, 4096], cell_1 kernel [2048, 4096], biases [4096]."""
    layers = lstm_layers(weights, "rnn/", lstm_layers_count, lstm_cells)
    states = run_dynamic_rnn(frames, num_frames, layers)
    return video_level_classifier(states[-1][1], weights, video_level_classifier_model,
                                  num_mixtures)


def keras_lstm_to_basic_lstm(kernel, recurrent_kernel, bias, forget_bias=1.0):
    """Keras LSTMCell weights -> BasicLSTMCell (kernel, bias) with the same forward pass.

    Keras: z = x K + h R + b, gates split (i, f, c, o), forget gate sigmoid(f) (unit_forget_bias
    only initialises b_f to 1). BasicLSTMCell: [x, h] kernel + bias split (i, j, f, o) with the
    constant forget_bias added. So kernel = [K; R] with columns reordered (i, c, f, o) and
    bias_f(basic) = b_f(keras) - forget_bias."""
    kernel, recurrent_kernel, bias = (common.as_float(a) for a in (kernel, recurrent_kernel, bias))
    stacked = np.concatenate([kernel, recurrent_kernel], axis=0)
    i, f, c, o = np.split(stacked, 4, axis=1)
    bi, bf, bc, bo = np.split(bias, 4)
    return (np.concatenate([i, c, f, o], axis=1),
            np.concatenate([bi, bc, bf - forget_bias, bo]))


def basic_lstm_to_keras(kernel, bias, input_size, forget_bias=1.0):
    """Inverse of keras_lstm_to_basic_lstm: -> (kernel [in, 4u], recurrent_kernel [u, 4u], bias)."""
    kernel, bias = common.as_float(kernel), common.as_float(bias)
    i, j, f, o = np.split(kernel, 4, axis=1)
    reordered = np.concatenate([i, f, j, o], axis=1)
    bi, bj, bf, bo = np.split(bias, 4)
    return (reordered[:input_size], reordered[input_size:],
            np.concatenate([bi, bf + forget_bias, bj, bo]))


# ----------------------------------------------------------------------------- losses

CROSS_ENTROPY_EPSILON = 1e-5  # losses.CrossEntropyLoss
SOFTMAX_LABEL_EPSILON = 10e-8  # losses.SoftmaxLoss: 10e-8 == 1e-7, floor of the label row sum


def cross_entropy_loss(predictions, labels, label_weights=None, epsilon=CROSS_ENTROPY_EPSILON):
    """losses.CrossEntropyLoss on probabilities: mean over the batch of
    sum over classes of -(y log(p + eps) + (1 - y) log(1 - p + eps)) [* label_weights]."""
    p, y = common.as_float(predictions), common.as_float(labels)
    per_class = -(y * np.log(p + epsilon) + (1.0 - y) * np.log(1.0 - p + epsilon))
    if label_weights is not None:
        per_class = per_class * common.as_float(label_weights)
    return float(np.mean(np.sum(per_class, axis=1)))


def hinge_loss(predictions, labels, b=1.0):
    """losses.HingeLoss: mean over the batch of sum over classes of max(0, b - (2y - 1) * p)."""
    p, y = common.as_float(predictions), common.as_float(labels)
    return float(np.mean(np.sum(np.maximum(0.0, b - (2.0 * y - 1.0) * p), axis=1)))


def softmax_loss(predictions, labels):
    """losses.SoftmaxLoss: labels L1-normalised with the row sum floored at 1e-7; a softmax of the
    PREDICTIONS (probabilities) across classes; mean over the batch of
    -sum(y_norm * log softmax)."""
    p, y = common.as_float(predictions), common.as_float(labels)
    y_norm = y / np.maximum(np.sum(y, axis=1, keepdims=True), SOFTMAX_LABEL_EPSILON)
    return float(np.mean(-np.sum(y_norm * np.log(common.softmax(p, axis=1)), axis=1)))


# ----------------------------------------------------------------------------- training arithmetic

# Constructor defaults of the TF1 classes (tf.compat.v1.train.*) that the starter builds with
# `optimizer_class(learning_rate)`: only the learning rate is passed, so these apply.
TF1_OPTIMIZER_DEFAULTS = {
    "AdamOptimizer": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "RMSPropOptimizer": {"decay": 0.9, "momentum": 0.0, "epsilon": 1e-10,
                         "initial_rms": 1.0, "centered": False},
    "AdagradOptimizer": {"initial_accumulator_value": 0.1},
    "AdadeltaOptimizer": {"rho": 0.95, "epsilon": 1e-8},
    "GradientDescentOptimizer": {},
    # MomentumOptimizer(learning_rate, momentum) has no default momentum: the starter's
    # `optimizer_class(learning_rate)` raises TypeError for --optimizer=MomentumOptimizer.
}


def adam_step(var, grad, m, v, step, lr, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """tf.train.AdamOptimizer, one dense update at 1-based `step`:
    m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; lr_t = lr sqrt(1-b2^t)/(1-b1^t);
    var -= lr_t m / (sqrt(v) + eps). Returns (var, m, v)."""
    g = common.as_float(grad)
    m = beta1 * common.as_float(m) + (1.0 - beta1) * g
    v = beta2 * common.as_float(v) + (1.0 - beta2) * g * g
    lr_t = lr * np.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    return common.as_float(var) - lr_t * m / (np.sqrt(v) + epsilon), m, v


def rmsprop_step(var, grad, rms, mom, lr, decay=0.9, momentum=0.0, epsilon=1e-10):
    """tf.train.RMSPropOptimizer (not centered); the rms slot starts at ONES:
    rms = decay rms + (1-decay) g^2; mom = momentum mom + lr g / sqrt(rms + eps); var -= mom."""
    g = common.as_float(grad)
    rms = decay * common.as_float(rms) + (1.0 - decay) * g * g
    mom = momentum * common.as_float(mom) + lr * g / np.sqrt(rms + epsilon)
    return common.as_float(var) - mom, rms, mom


def adagrad_step(var, grad, accumulator, lr):
    """tf.train.AdagradOptimizer (accumulator starts at 0.1): acc += g^2;
    var -= lr g / sqrt(acc)."""
    g = common.as_float(grad)
    accumulator = common.as_float(accumulator) + g * g
    return common.as_float(var) - lr * g / np.sqrt(accumulator), accumulator


def momentum_step(var, grad, accumulator, lr, momentum, use_nesterov=False):
    """tf.train.MomentumOptimizer: acc = momentum acc + g; var -= lr acc
    (nesterov: var -= lr (g + momentum acc))."""
    g = common.as_float(grad)
    accumulator = momentum * common.as_float(accumulator) + g
    update = g + momentum * accumulator if use_nesterov else accumulator
    return common.as_float(var) - lr * update, accumulator


def learning_rate(base_learning_rate, global_step, batch_size, num_towers,
                  learning_rate_decay_examples, learning_rate_decay):
    """train.py build_graph: tf.train.exponential_decay(base, global_step * batch_size * num_towers,
    decay_examples, decay, staircase=True) = base * decay ** floor(examples / decay_examples).
    batch_size is the per-tower --batch_size; the reader batch is batch_size * num_towers."""
    examples = global_step * batch_size * num_towers
    return base_learning_rate * learning_rate_decay ** np.floor(
        examples / learning_rate_decay_examples)


def combine_gradients(tower_gradients):
    """utils.combine_gradients: the per-variable SUM (not mean) of the towers' gradients.
    tower_gradients: list over towers of lists of arrays (same variable order)."""
    return [np.sum([common.as_float(tower[i]) for tower in tower_gradients], axis=0)
            for i in range(len(tower_gradients[0]))]


def clip_gradient_norms(gradients, max_norm):
    """utils.clip_gradient_norms: tf.clip_by_norm per variable, g * max_norm / max(|g|_2, max_norm)
    (not a global-norm clip). Applied after combine_gradients."""
    clipped = []
    for g in gradients:
        g = common.as_float(g)
        clipped.append(g * max_norm / max(float(np.sqrt(np.sum(g * g))), max_norm))
    return clipped


def tower_loss(label_loss, regularization_losses, regularization_penalty=1.0):
    """train.py: final_loss = regularization_penalty * reg_loss + label_loss per tower, where
    reg_loss = result['regularization_loss'] (0 when absent) + sum of tf.losses regularizers."""
    return regularization_penalty * float(np.sum(regularization_losses)) + label_loss


# ----------------------------------------------------------------------------- inference.py


def get_segments(video_matrix, num_frames, segment_size=5):
    """inference.get_segments: cut each video into consecutive `segment_size`-frame segments.

    The last, partial segment keeps its zero padding (frames up to the next multiple of
    segment_size); segment_num_frames = min(frames left, segment_size); video_segment_ids [S, 2] =
    (video index in batch, start frame 0, 5, 10, ...). Segments are ordered video by video."""
    video_matrix = common.as_float(video_matrix)
    num_frames = np.asarray(num_frames, dtype=np.int64).reshape(-1)
    batch, max_frames, feature_dim = video_matrix.shape
    segments, counts, ids = [], [], []
    for video in range(batch):
        for start in range(0, max_frames, segment_size):
            left = int(num_frames[video]) - start
            if left <= 0:
                continue
            block = video_matrix[video, start:start + segment_size]
            if block.shape[0] < segment_size:  # cannot happen for max_frames % 5 == 0
                block = np.concatenate(
                    [block, np.zeros((segment_size - block.shape[0], feature_dim))])
            segments.append(block)
            counts.append(min(left, segment_size))
            ids.append((video, start))
    return {"video_batch": np.asarray(segments).reshape(-1, segment_size, feature_dim),
            "num_frames_batch": np.asarray(counts, dtype=np.int64),
            "video_segment_ids": np.asarray(ids, dtype=np.int64).reshape(-1, 2)}


def format_lines(video_ids, predictions, top_k, whitelisted_cls_mask=None):
    """inference.format_lines: one 'id,c1 s1 c2 s2 ...' line per row (no newline here).

    The whitelist mask multiplies the predictions IN PLACE (masked classes score 0, also in the
    printed scores); the top_k classes come from np.argpartition and are then sorted by descending
    score with a stable sort (ties keep argpartition's order); scores print with '%g' (6
    significant digits), classes with '%i'."""
    predictions = np.array(predictions, dtype=np.float32)  # the session returns float32
    lines = []
    for index, video_id in enumerate(video_ids):
        row = predictions[index]
        if whitelisted_cls_mask is not None:
            row *= whitelisted_cls_mask
        top = np.argpartition(row, -top_k)[-top_k:]
        pairs = sorted(((int(c), row[c]) for c in top), key=lambda pair: -pair[1])
        lines.append(f"{video_id}," + " ".join("%i %g" % (c, s) for c, s in pairs))
    return lines


def segment_submission(segment_lines, whitelisted_cls_mask, segment_max_pred=100000):
    """inference.py --segment_labels post-processing: lines 'videoid:start,c s c s ...' (the
    per-segment top_k written by format_lines) -> the 'Class,Segments' CSV text.

    For each (class, score) of each line, in file order, skipping classes whose mask entry is 0:
    push (score, segment_id) onto the class's min-heap (heapq); once it holds segment_max_pred
    items, heappushpop (the new item enters only if it compares greater than the smallest tuple:
    on equal scores the larger segment_id string wins). Scores are the floats parsed back from the
    '%g' text. Output: header, then one row per class in order of the class's first appearance;
    segments sorted by descending score with a stable sort of the heap's array (equal scores keep
    their heap-array order)."""
    heaps = {}
    for line in segment_lines:
        segment_id, preds = line.rstrip("\n").split(",")
        if segment_id == "VideoId":
            continue
        fields = preds.split(" ")
        for cls, score in zip(fields[0::2], fields[1::2]):
            cls, score = int(cls), float(score)
            if not whitelisted_cls_mask[cls]:
                continue
            heap = heaps.setdefault(cls, [])
            if len(heap) >= segment_max_pred:
                heapq.heappushpop(heap, (score, segment_id))
            else:
                heapq.heappush(heap, (score, segment_id))
    rows = ["Class,Segments"]
    for cls, heap in heaps.items():
        heap.sort(key=lambda item: item[0], reverse=True)
        rows.append("%d,%s" % (cls, " ".join(item[1] for item in heap)))
    return "\n".join(rows) + "\n"


def whitelist_mask(lines, num_classes):
    """inference.py: mask[int(line)] = 1 for every line that parses as an int (the 'Index' header
    and any other non-integer line are skipped)."""
    mask = np.zeros(num_classes, dtype=np.float32)
    for line in lines:
        try:
            mask[int(line)] = 1.0
        except ValueError:
            continue
    return mask
