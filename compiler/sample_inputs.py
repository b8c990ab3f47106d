"""Real-valued sample inputs for the PP-OCR models: text rendered with a real font.

Random tensors barely excite an OCR model (det's map stays near 0 on noise), so a comparison with
ONNX Runtime on them checks little. These images carry printed text lines, drawn with the DejaVu
font that matplotlib ships, and are normalized the way PP-OCR's own pre-processing does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_LINES = [
    "tilecc compiles ONNX",
    "PP-OCRv4 text detection 2026",
    "Hello, phone NPU!",
    "0123456789 ABCDEFG",
    "ahead-of-time .so",
]
# PP-OCR det normalizes with ImageNet statistics; cls and rec map [0, 255] to [-1, 1].
DET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
DET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _font(size: int):
    import matplotlib
    from PIL import ImageFont

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size)


def text_image(height: int, width: int, lines: list[str] | None = None, seed: int = 0):
    """An RGB uint8 image (H, W, 3) with dark text lines on a light, slightly noisy page."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    lines = lines or _LINES
    page = Image.new("RGB", (width, height), (235, 232, 225))
    draw = ImageDraw.Draw(page)
    size = max(10, min(height // (len(lines) + 1) * 2 // 3, width // 12))
    font = _font(size)
    for row, text in enumerate(lines):
        y = int((row + 0.3) * height / (len(lines) + 0.5))
        if y + size > height:
            break
        draw.text((int(width * 0.05), y), text, fill=(20, 20, 30), font=font)
    pixels = np.asarray(page, dtype=np.float32)
    pixels += rng.normal(0, 4, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def text_line(height: int, width: int, text: str = "tilecc 0.1: ONNX to phones") -> np.ndarray:
    """One text line filling an (H, W, 3) crop, as rec and cls see after det's cropping."""
    return text_image(height, width, [text])


def ppocr_input(kind: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """An NCHW float32 input for `kind` in {det, cls, rec}, of the given (1, 3, H, W) shape."""
    _, channels, height, width = shape
    if channels != 3:
        raise ValueError(f"PP-OCR inputs have 3 channels, got shape {shape}")
    if kind == "det":
        image = text_image(height, width, seed=seed).astype(np.float32) / 255.0
        image = (image - DET_MEAN) / DET_STD
    elif kind in ("cls", "rec"):
        image = text_line(height, width).astype(np.float32) / 127.5 - 1.0
    else:
        raise ValueError(f"unknown PP-OCR model kind '{kind}' (det, cls, rec)")
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
