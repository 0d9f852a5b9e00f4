"""The segment-ranking options shared by yt8m.segments.inference, yt8m.segments.evaluate and
yt8m.beam_inference (the MOD recipe, SPEC 4)."""
import dataclasses

import yt8m  # noqa: F401
from yt8m.core.options import option


@dataclasses.dataclass
class SegmentRanking:
    segment_label_ids: str = option(
        "", "Whitelist CSV (header Index, e.g. segment_label_ids.csv): the classes ranked in the "
        "segment CSV; empty: every class.")
    segment_candidates: int = option(
        20, "Candidate classes per video: the video model's top N, whose segments are scored.")
    video_score_weight: float = option(0.05, "w of the fused score P_vid^w * P_seg^(1-w).")
    segment_top_k: int = option(100000, "Segments kept per class.")
