"""Exports trained models as one ensemble SavedModel (float32, float16 or int8 weights).

    python export_ensemble.py --members=runs/netvlad@last:3,runs/nextvlad@20000:30000 \
        --weights=0.6,0.4 --float16 --output_dir=export/ensemble

See docs/export.md for the member syntax, the signatures and how to serve the export.
"""
from absl import flags

import yt8m  # noqa: F401
from yt8m.export import exporter
from yt8m.export import flags as export_flags
from yt8m.training import cli

FLAGS = flags.FLAGS
export_flags.define_export_flags(FLAGS)


def main():
    report = exporter.export_ensemble(export_flags.config_from_flags(FLAGS))
    print(exporter.format_report(report), flush=True)


if __name__ == "__main__":
    cli.run(main, "export_ensemble.py")
