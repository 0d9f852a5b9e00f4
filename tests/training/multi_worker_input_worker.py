"""One worker of test_multi_worker's input-sharding run (started by the test with TF_CONFIG set).

    python tests/training/multi_worker_input_worker.py OUTPUT_DIR TRAIN_DIR PATTERN [PATTERN ...]

For each data pattern, builds the trainer exactly as train.py does under
--distribution_strategy=multi_worker (one epoch, batches of BATCH per worker) and reads its
training dataset to the end, recording the id of every video that came out of the parse step.
Writes OUTPUT_DIR/worker<i>.json: {pattern: {"shard": [index, count], "ids": [...]}}.
"""
import json
import os
import sys

import yt8m  # noqa: F401

NUM_CLASSES = 5
MAX_FRAMES = 10
BATCH = 4
SEED = 3


def main(output_dir, train_dir, patterns):
    # The strategy first: it must be created before TensorFlow's runtime starts.
    from yt8m.training import distribution
    strategy = distribution.make_strategy("multi_worker")
    from yt8m.core.config import DataConfig, TrainConfig
    from yt8m.training import multi_worker, trainer

    report = {}
    for number, pattern in enumerate(patterns):
        config = TrainConfig(
            train_dir=os.path.join(train_dir, f"run{number}"), train_data_pattern=pattern,
            data=DataConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                            frame_features=True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES),
            model="FrameLevelLogisticModel", batch_size=BATCH, num_epochs=1, shuffle_seed=SEED,
            distribution_strategy="multi_worker")
        run = trainer.Trainer(config, strategy=strategy)
        ids = [video_id.decode() for batch in run.dataset for video_id in batch["id"].numpy()]
        report[pattern] = {"shard": list(run.input_shard), "local_batch": run.local_batch_size,
                           "ids": ids}
    index = multi_worker.worker_index(strategy)
    with open(os.path.join(output_dir, f"worker{index}.json"), "w") as handle:
        json.dump(report, handle)
    multi_worker.barrier(strategy)  # neither leaves the cluster while the other still needs it


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
