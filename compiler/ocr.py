"""A minimal PP-OCR pipeline around det and rec, for judging int8 builds against fp32.

Det's probability map becomes axis-aligned text boxes; boxes of two runs are compared by
one-to-one IoU matching (precision, recall, F1); rec reads each box's crop as a string by CTC
greedy decoding. Both sides of a comparison go through the same code, so what differs is the
model build, not the post-processing. Simplified from PP-OCR's DB post-processing: boxes stay
axis-aligned (no rotated rectangles, no polygon offsetting), which suits the upright pages used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .sample_inputs import DET_MEAN, DET_STD  # PP-OCR det's own normalization

DET_THRESHOLD = 0.3  # PP-OCR's thresh: a pixel is text above it
BOX_THRESHOLD = 0.6  # PP-OCR's box_thresh: mean probability over a kept component
UNCLIP_RATIO = 1.5  # PP-OCR's unclip_ratio: DB predicts text shrunk by about this much
MIN_SIDE = 3  # PP-OCR's min_size: smaller components are noise
REC_HEIGHT = 48  # PP-OCRv4 rec's input height; its width is free


def det_input(canvas: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> det's NCHW float32: ImageNet mean / std on [0, 1] values."""
    image = (canvas.astype(np.float32) / 255.0 - DET_MEAN) / DET_STD
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def _unclip(width: int, height: int, ratio: float) -> int:
    """DB's expansion distance area * ratio / perimeter, for an axis-aligned box: DB's labels
    are text shrunk inward by a distance of that form (area * (1 - 0.4^2) / perimeter), so
    the thresholded map is about that much smaller than the printed text."""
    return round(width * height * ratio / (2 * (width + height)))


def boxes_from_map(
    prob: np.ndarray,
    threshold: float = DET_THRESHOLD,
    box_threshold: float = BOX_THRESHOLD,
    min_side: int = MIN_SIDE,
    unclip_ratio: float = UNCLIP_RATIO,
) -> np.ndarray:
    """Text boxes of a det probability map ((H, W), or det's (1, 1, H, W) output), as int
    rows [x0, y0, x1, y1) (half-open, pixels of the map), sorted top to bottom, left to right.

    Each 4-connected component of prob > threshold is one box: its bounding box, kept if its
    shorter side is at least min_side and the mean probability over the component is at least
    box_threshold (PP-OCR's score_mode "slow", the mean inside the text's own outline: over
    the bounding box, a slightly tilted line would score the background between its ends),
    then widened on every side by the unclip distance and clipped to the map."""
    from scipy import ndimage

    prob = np.asarray(prob, dtype=np.float32)
    prob = prob.reshape(prob.shape[-2:])
    labels, count = ndimage.label(prob > threshold)
    scores = ndimage.mean(prob, labels, np.arange(1, count + 1))
    height, width = prob.shape
    boxes = []
    for (rows, cols), score in zip(ndimage.find_objects(labels), scores, strict=True):
        box_h, box_w = rows.stop - rows.start, cols.stop - cols.start
        if min(box_h, box_w) < min_side or score < box_threshold:
            continue
        d = _unclip(box_w, box_h, unclip_ratio)
        boxes.append(
            [
                max(cols.start - d, 0),
                max(rows.start - d, 0),
                min(cols.stop + d, width),
                min(rows.stop + d, height),
            ]
        )
    boxes.sort(key=lambda b: (b[1], b[0]))
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (rows) with every box of `b` (columns), [x0, y0, x1, y1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass(frozen=True)
class BoxScore:
    """Predicted boxes against reference boxes: counts, and the rates they give."""

    matched: int
    predicted: int
    reference: int

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else float(not self.reference)

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else float(not self.predicted)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: BoxScore) -> BoxScore:
        """Counts summed over images: the micro-average, where every box weighs the same."""
        return BoxScore(
            self.matched + other.matched,
            self.predicted + other.predicted,
            self.reference + other.reference,
        )


def match_boxes(predicted: np.ndarray, reference: np.ndarray, min_iou: float = 0.5) -> BoxScore:
    """Greedy one-to-one matching: repeatedly pair the two unmatched boxes with the highest
    IoU, while it is at least min_iou. No predictions for no reference boxes scores 1.0."""
    iou = iou_matrix(predicted, reference)
    matched = 0
    while iou.size and iou.max() >= min_iou:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        iou[i, :] = -1.0
        iou[:, j] = -1.0
        matched += 1
    return BoxScore(matched, len(predicted), len(reference))


def crop_lines(image: np.ndarray, boxes: np.ndarray, scale: float = 1.0) -> list[np.ndarray]:
    """The crop of each box from `image`; boxes are in coordinates of `image` scaled by
    `scale` (det's canvas), so a downscaled page is read at its source resolution."""
    height, width = image.shape[:2]
    crops = []
    for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
        c0, r0 = max(int(np.floor(x0 / scale)), 0), max(int(np.floor(y0 / scale)), 0)
        c1, r1 = min(int(np.ceil(x1 / scale)), width), min(int(np.ceil(y1 / scale)), height)
        crops.append(image[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)])
    return crops


def rec_input(line: np.ndarray, width: int = 320) -> np.ndarray:
    """RGB uint8 crop -> rec's (1, 3, 48, width) float32, as PP-OCR's resize_norm_img: height
    48 keeping the aspect ratio (squeezed to `width` if wider), [0, 255] -> [-1, 1],
    zero-padded on the right (0 is mid-grey after normalization)."""
    from PIL import Image

    line_h, line_w = line.shape[:2]
    new_w = min(width, max(1, int(np.ceil(REC_HEIGHT * line_w / line_h))))
    resized = Image.fromarray(line).resize((new_w, REC_HEIGHT), Image.Resampling.BILINEAR)
    values = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
    out = np.zeros((1, 3, REC_HEIGHT, width), np.float32)
    out[0, :, :, :new_w] = values.transpose(2, 0, 1)
    return out


def rec_charset(model_path: str | Path) -> list[str]:
    """rec's classes in output order: the CTC blank (index 0, as ""), the characters of the
    model's `character` metadata (one per line), then " " (PaddleOCR's use_space_char adds it
    last; PP-OCRv4 rec has len(dictionary) + 2 classes)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if "character" not in props:
        raise InputError(f"{model_path}: no 'character' metadata (not a PP-OCR rec model?)")
    return ["", *props["character"].split("\n"), " "]


def ctc_decode(scores: np.ndarray, charset: list[str]) -> str:
    """Greedy CTC: the best class per time step, repeats collapsed, blanks (0) dropped.
    `scores` is (T, C) or rec's (1, T, C) output; C must equal len(charset)."""
    scores = np.asarray(scores)
    scores = scores.reshape(scores.shape[-2:])
    if scores.shape[-1] != len(charset):
        raise InputError(
            f"rec output has {scores.shape[-1]} classes, the character set {len(charset)}"
        )
    best = scores.argmax(axis=-1)
    keep = np.ones(best.shape, bool)
    keep[1:] = best[1:] != best[:-1]
    return "".join(charset[k] for k in best[keep & (best != 0)])


def match_rate(got: list[str], want: list[str]) -> float:
    """Share of positions where the two lists hold the same string (1.0 for two empty lists)."""
    if len(got) != len(want):
        raise InputError(f"{len(got)} strings compared with {len(want)}")
    return sum(g == w for g, w in zip(got, want, strict=True)) / len(want) if want else 1.0


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning a into b."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_error_rate(got: list[str], want: list[str]) -> float:
    """Edits needed to turn every `got` string into its `want`, per character of `want`:
    exact match counts a line with one wrong letter as wholly wrong, this says how wrong."""
    if len(got) != len(want):
        raise InputError(f"{len(got)} strings compared with {len(want)}")
    edits = sum(edit_distance(g, w) for g, w in zip(got, want, strict=True))
    return edits / max(sum(len(w) for w in want), 1)
