"""Exports trained models as one ensemble SavedModel (float32, float16 or int8 weights).

    python export_ensemble.py --members=runs/netvlad@last:3,runs/nextvlad@20000:30000 \
        --weights=0.6,0.4 --precision=float16 --output_dir=export/ensemble

See docs/export.md for the member syntax, the signatures and how to serve the export.
"""
import yt8m  # noqa: F401
from yt8m.core import cli
from yt8m.core import options
from yt8m.export import exporter

options.define_flags(exporter.ExportConfig)


def main():
    report = exporter.export_ensemble(options.from_flags(exporter.ExportConfig))
    print(exporter.format_report(report), flush=True)


if __name__ == "__main__":
    cli.run(main, "export_ensemble.py")
