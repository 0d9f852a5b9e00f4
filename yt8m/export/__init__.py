"""Ensemble export (SPEC 6-7): checkpoint averaging, float16 / int8 / bit-packed sparse weight
storage, one SavedModel with the serving signatures, size budget, weight tuning. Entry point:
export_ensemble.py."""
from yt8m.export.demo import demo_export
from yt8m.export.exporter import ExportConfig, export_ensemble, format_report

__all__ = ["ExportConfig", "demo_export", "export_ensemble", "format_report"]
