"""One training step of the trainer on two replicas (MirroredStrategy over two logical CPUs), for
test_train's check that replica gradients are summed as the starter sums its towers'.

    python tests/training/two_replica_step.py DATA_DIR OUTPUT.npz [--average_replica_gradients]
        [--mixed_precision=POLICY]

Writes the global batch, the weights before and after the step (LogisticModel on video-level
features, plain SGD, learning rate 1, per-variable clipping at 1.0; mixed_float16: loss scaled).
"""
import sys

import numpy as np

import yt8m  # noqa: F401
from yt8m.training import distribution


def main(data_dir, output, average, precision):
    distribution.configure_cpu_devices(2)  # before TensorFlow runs anything
    sys.path.insert(0, __file__.rsplit("/", 2)[0])  # tests/: training_helpers
    import training_helpers as helpers
    from yt8m.training import trainer

    config = helpers.train_config(
        output + ".train", data_dir, distribution_strategy="mirrored", batch_size=2,
        optimizer="GradientDescentOptimizer", base_learning_rate=1.0, learning_rate_decay=1.0,
        clip_gradient_norm=1.0, max_steps=1, average_replica_gradients=average,
        mixed_precision=precision)
    run = trainer.Trainer(config)
    assert run.num_replicas == 2, run.num_replicas
    batch = next(run.iterator)
    layer = run.model.get_layer("logistic")
    before = [layer.kernel.numpy(), layer.bias.numpy()]
    run.train_step(batch)  # split over the two replicas inside
    np.savez(output, mean_rgb=batch["mean_rgb"].numpy(), mean_audio=batch["mean_audio"].numpy(),
             labels=batch["labels"].numpy(), kernel_before=before[0], bias_before=before[1],
             kernel_after=layer.kernel.numpy(), bias_after=layer.bias.numpy())


if __name__ == "__main__":
    policies = [arg.split("=", 1)[1] for arg in sys.argv[3:]
                if arg.startswith("--mixed_precision=")]
    main(sys.argv[1], sys.argv[2], "--average_replica_gradients" in sys.argv[3:],
         (policies or ["float32"])[-1])
