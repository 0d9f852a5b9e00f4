"""The benchmarks' figures: matplotlib without a display, written atomically as PNG files."""
import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402  (after choosing the headless backend)

import yt8m  # noqa: F401,E402
from yt8m.core import files  # noqa: E402

subplots = pyplot.subplots


def save_png(figure, path, dpi=110, rect=None):
    """Lays `figure` out (its panels inside `rect`, (left, bottom, right, top) in figure
    fractions, default all of it), writes it to `path` (complete or not at all) and frees it."""
    figure.tight_layout(rect=rect)
    with files.atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=dpi)
    pyplot.close(figure)
