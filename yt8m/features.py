"""The YouTube-8M feature streams: names and widths of the released features (SPEC section 1).

The record format (`yt8m.data.records`) and the models' default inputs (`frame_level_models`)
share these; this module imports nothing, so the models need not load the tf.data readers.
"""
DEFAULT_FEATURE_NAMES = ("rgb", "audio")
DEFAULT_FEATURE_SIZES = (1024, 128)
VIDEO_FEATURE_NAMES = ("mean_rgb", "mean_audio")
