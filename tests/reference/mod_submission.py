"""The MOD solution's submission assembly (linrongc/solution_youtube8m_v3 @ 7d71bde4,
analysis/dummy_prediction.py, analysis/value_model.py, analysis/util.py) in plain Python.

generate_pred_file() there runs, in order:
1. candidates = video_candidates(top-20 video CSV)        (DummyVideoPrediction.dummy_video_preds)
2. fused = fuse(candidates, per-segment predictions)      (ValueModel.retrieval, 0.05 / 0.95)
3. fallback = video_candidates(top-1000 video CSV)        (same expansion, another CSV)
4. add_fallbacks(fused, fallback)                         (fill each class up to 100000)
5. submission_rows(fused, whitelist, 100000)              (write_preds_map)
The reference ran on Python 2 (iteritems); dict iteration is taken here as insertion order.
"""
import math

SEGMENT_LIMIT = 100000


def load_whitelist(lines):
    """analysis/util.load_whitelist_topics: int of every line after the first (the 'Index' header),
    in file order."""
    return [int(line.rstrip("\n")) for line in list(lines)[1:]]


def parse_predictions(lines):
    """analysis/util.parse_vid_preds (and DummySegmentPrediction.seg_preds_gtr): skip the header;
    'id,c s c s ...' -> {id: {class: score}} (ids keep file order)."""
    predictions = {}
    for line in list(lines)[1:]:
        key, pairs = line.rstrip("\n").split(",")
        fields = pairs.split()
        predictions[key] = {int(c): float(s) for c, s in zip(fields[0::2], fields[1::2])}
    return predictions


def video_candidates(video_predictions, video_lengths, whitelist, limit=SEGMENT_LIMIT):
    """DummyVideoPrediction.dummy_video_preds: per whitelisted class, the videos whose prediction
    row holds the class, sorted by that video score descending (stable: ties keep CSV order); each
    video expands to its full 5-frame segments 'vid:0', 'vid:5', ... up to len - len % 5 (a
    trailing partial segment is dropped), all with the video's score; the expansion stops at
    `limit` segments per class. Returns {class: [(segment_id, video_score), ...]}."""
    inverted = {c: [] for c in whitelist}
    allowed = set(whitelist)
    for video, row in video_predictions.items():
        for cls, score in row.items():
            if cls in allowed:
                inverted[cls].append((video, score))
    result = {}
    for cls in whitelist:
        ranked = sorted(inverted[cls], key=lambda item: item[1], reverse=True)
        segments = []
        for video, score in ranked:
            length = video_lengths[video]
            for start in range(0, length - length % 5, 5):
                segments.append((f"{video}:{start}", score))
                if limit and len(segments) >= limit:
                    break
            if limit and len(segments) >= limit:
                break
        result[cls] = segments
    return result


def fuse(candidates, segment_predictions, whitelist, video_exp=0.05, seg_exp=0.95, cutoff=0.0):
    """ValueModel.retrieval with rerank=None: for each segment line (file order) and each of its
    whitelisted classes: value = video_score ** 0.05 * segment_score ** 0.95, video_score taken
    from the class's candidate list (0 when the segment is not a candidate); kept when value >
    cutoff (0), so only candidates survive. Per class: sorted by value descending, stable (ties
    keep segment-file order). Classes with no kept segment are absent from the result."""
    allowed = set(whitelist)
    video_scores = {cls: dict(pairs) for cls, pairs in candidates.items()}
    results = {}
    for segment_id, row in segment_predictions.items():
        for cls, segment_score in row.items():
            if cls not in allowed:
                continue
            video_score = video_scores.get(cls, {}).get(segment_id, 0)
            value = math.pow(video_score, video_exp) * math.pow(segment_score, seg_exp)
            if value > cutoff:
                results.setdefault(cls, []).append((segment_id, value))
    for cls in results:
        results[cls].sort(key=lambda item: item[1], reverse=True)
    return results


def add_fallbacks(fused, fallback, limit=SEGMENT_LIMIT):
    """value_model.add_fallbacks, in place: for each class PRESENT in `fused`, append the fallback
    list's segments (its order: video score descending, then segment start) that are not already
    listed, until the class holds `limit` segments. Appended entries keep the fallback score and
    are never re-sorted. (A whitelisted class absent from `fused` gets no fallback and makes the
    reference's write_preds_map raise KeyError.)"""
    for cls in fused:
        covered = {segment for segment, _ in fused[cls]}
        total = len(fused[cls])
        for segment, score in fallback[cls]:
            if total >= limit:
                break
            if segment not in covered:
                fused[cls].append((segment, score))
                total += 1
    return fused


def submission_rows(fused, whitelist, limit=SEGMENT_LIMIT):
    """value_model.write_preds_map: 'Class,Segments' then, for every whitelisted class in whitelist
    order, 'c,' + the first `limit` segment ids joined by spaces."""
    rows = ["Class,Segments"]
    for cls in whitelist:
        rows.append(f"{cls}," + " ".join(segment for segment, _ in fused[cls][:limit]))
    return "\n".join(rows) + "\n"
