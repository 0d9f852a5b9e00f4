"""YouTube-8M data layer: record format helpers (`records`) and tf.data readers (`readers`)."""
from yt8m.data import records
from yt8m.data.records import (DEFAULT_FEATURE_NAMES, DEFAULT_FEATURE_SIZES, DEFAULT_MAX_FRAMES,
                               DEFAULT_NUM_CLASSES, SEGMENT_SIZE, VIDEO_FEATURE_NAMES, dequantize,
                               dequantize_np, make_sequence_example, make_video_example, quantize)
from yt8m.data.readers import (dequantize_padded, frame_dataset, list_files, segment_dataset,
                               video_dataset)

__all__ = [
    "records", "DEFAULT_FEATURE_NAMES", "DEFAULT_FEATURE_SIZES", "DEFAULT_MAX_FRAMES",
    "DEFAULT_NUM_CLASSES", "SEGMENT_SIZE", "VIDEO_FEATURE_NAMES", "dequantize", "dequantize_np",
    "make_sequence_example", "make_video_example", "quantize", "dequantize_padded",
    "frame_dataset", "list_files", "segment_dataset", "video_dataset",
]
