"""python -m yt8m.synthetic --output_dir=DIR [--num_videos=... --num_classes=... --seed=...]:
writes a synthetic data set and prints a JSON summary line."""
import dataclasses
import json
from typing import Optional

import yt8m  # noqa: F401
from yt8m.core import cli
from yt8m.core import options
from yt8m.synthetic.generator import Config
from yt8m.synthetic.writer import generate


@dataclasses.dataclass
class Run:
    """How to write (the output does not depend on it)."""
    output_dir: Optional[str] = options.option(None, "Directory to write the data set into.",
                                     required=True)
    num_workers: int = options.option(
        2, "Processes encoding videos (the output does not depend on it).")


def main():
    run = options.from_flags(Run)
    summary = generate(run.output_dir, num_workers=run.num_workers,
                       **dataclasses.asdict(options.from_flags(Config)))
    keys = ("output_dir", "num_videos", "segment_ratings", "seconds", "videos_per_second")
    print(json.dumps({key: summary[key] for key in keys}))


if __name__ == "__main__":
    options.define_flags(Run)
    options.define_flags(Config)
    cli.run(main, "yt8m.synthetic")
