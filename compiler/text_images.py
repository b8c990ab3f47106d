"""Real images with printed text, from packages on PyPI, for the int8 accuracy evaluation.

Rendered text (`sample_inputs.py`) is too clean to show what int8 rounding does to an OCR model;
these are photographs, scans and screenshots that Python packages ship. Two sources:

- installed packages: scikit-image (the `test` extra) and matplotlib (a dependency) ship sample
  images in their wheels; the version is whatever is installed, so the file's sha256 is
  reported (`provenance`) rather than checked.
- the OCRmyPDF source distribution (pinned, fetched once with `pip download` into tilecc's
  cache, each member sha256-checked): its test resources are scans of real pages.

Checked and left out because they show no legible text: scikit-image's `logo`, `coffee`,
`rocket`, `astronaut`, `chelsea`, `camera` and the other photographs, matplotlib's
`grace_hopper.jpg` and `Minduka_Present_Blue_Pack.png`.

A `View` is one det input: a region of a source image (fractions of its width and height)
letterboxed into a square canvas. Calibration and evaluation views are disjoint: a source is in
one split only, except two pages whose regions are split between them (`VIEWS` says which).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assets import cache_dir, sha256
from .errors import InputError, ToolError

OCRMYPDF_SDIST = ("ocrmypdf", "17.13.0")
SPLITS = ("calibration", "evaluation")


@dataclass(frozen=True)
class Source:
    """One image file inside a package: where it is and what it shows."""

    package: str  # PyPI distribution name
    module: str  # the importable package that holds it ("" for a source distribution)
    path: str  # inside the installed package, or a member path inside the sdist
    shows: str
    sha256: str | None = None  # pinned for sdist members; installed files are reported only


SOURCES = {
    "skimage-page": Source(
        "scikit-image",
        "skimage",
        "data/page.png",
        "photo of a printed book page: 'Region-based segmentation', a paragraph, a code line",
    ),
    "skimage-text": Source(
        "scikit-image",
        "skimage",
        "data/text.png",
        "photo of handwritten formulas on lined paper, at an angle",
    ),
    "mpl-logo2": Source(
        "matplotlib",
        "matplotlib",
        "mpl-data/sample_data/logo2.png",
        "the word 'matplotlib' in large bold letters (logo)",
    ),
    "skimage-motorcycle": Source(
        "scikit-image",
        "skimage",
        "data/motorcycle_left.png",
        "photo of a motorcycle in a garage: 'YAMAHA' on the tank and engine, labels on boxes",
    ),
    "ocrmypdf-typewriter": Source(
        "ocrmypdf",
        "",
        "tests/resources/typewriter.png",
        "scan of a typewritten Dutch recipe, 'Linzensoep a la Waterman' (4000x2864)",
        "6f7a83685a83af954e9672b3e2db3253af165513d2826d780a48e175742f4469",
    ),
    "ocrmypdf-linn": Source(
        "ocrmypdf",
        "",
        "tests/resources/linn.png",
        "scan of a two-column product sheet, 'The LinnSequencer' (2550x3300)",
        "dcd90f08a6b8a733612f818330153636c13283dd548e2e092cad1fe628ec7bf3",
    ),
    "ocrmypdf-baiona": Source(
        "ocrmypdf",
        "",
        "tests/resources/baiona.png",
        "map with place names ('BAIONA', 'Angelu', 'Hiriburu', a legend)",
        "b51658d4f7feea0a3022af5bca74d2c98b674c889e17ed8a14d717d9ef66ea71",
    ),
    "ocrmypdf-crom": Source(
        "ocrmypdf",
        "",
        "tests/resources/crom.png",
        "one printed line: 'Covfefe is a perfectly cromulent word.'",
        "9d6a8474e58713c5ee77e4e03e90d89742e240d8a8358574ffce0bc1cb56bdbe",
    ),
    "ocrmypdf-screenshot": Source(
        "ocrmypdf",
        "",
        "misc/flatpak/sample_screenshot.png",
        "terminal screenshot: ocrmypdf's progress output, light text on dark",
        "d5c35c2285c3c6e270a3e84f5ad6bdcd9b0bf89954b1448436a44fbfe65f6246",
    ),
    "ocrmypdf-workflow": Source(
        "ocrmypdf",
        "",
        "docs/images/macos-workflow.png",
        "macOS Automator screenshot: form labels, menus and a shell script",
        "d047c871232283fa64b76fa7f2acf0712439752bbead746e40208cb3644ad68d",
    ),
}


@dataclass(frozen=True)
class View:
    """A region of a source (x0, y0, x1, y1 as fractions) used as one det input."""

    name: str
    source: str
    region: tuple[float, float, float, float]
    split: str
    note: str = "whole image"


WHOLE = (0.0, 0.0, 1.0, 1.0)
VIEWS = (
    View("text", "skimage-text", WHOLE, "calibration"),
    View("logo2", "mpl-logo2", WHOLE, "calibration"),
    View("motorcycle", "skimage-motorcycle", WHOLE, "calibration"),
    View("baiona", "ocrmypdf-baiona", WHOLE, "calibration"),
    View("linn-ul", "ocrmypdf-linn", (0.0, 0.0, 0.5, 0.5), "calibration", "upper-left quarter"),
    View("linn-lr", "ocrmypdf-linn", (0.5, 0.5, 1.0, 1.0), "calibration", "lower-right quarter"),
    View("shot-left", "ocrmypdf-screenshot", (0.0, 0.0, 0.5, 1.0), "calibration", "left half"),
    View("page", "skimage-page", WHOLE, "evaluation"),
    View("typewriter", "ocrmypdf-typewriter", WHOLE, "evaluation"),
    View(
        "typewriter-zoom",
        "ocrmypdf-typewriter",
        (0.0, 0.45, 0.5, 0.9),
        "evaluation",
        "lower-left region, at 2x the scale of the whole page",
    ),
    View("linn-ur", "ocrmypdf-linn", (0.5, 0.0, 1.0, 0.5), "evaluation", "upper-right quarter"),
    View("linn-ll", "ocrmypdf-linn", (0.0, 0.5, 0.5, 1.0), "evaluation", "lower-left quarter"),
    View("shot-right", "ocrmypdf-screenshot", (0.5, 0.0, 1.0, 1.0), "evaluation", "right half"),
    View("workflow", "ocrmypdf-workflow", WHOLE, "evaluation"),
    View("crom", "ocrmypdf-crom", WHOLE, "evaluation"),
)


@dataclass
class Sample:
    """One det input: the view's pixels and the canvas det sees (the view scaled by `scale`,
    padded at the right and bottom)."""

    view: View
    image: np.ndarray  # the view's region at source resolution, uint8 (H, W, 3)
    canvas: np.ndarray  # uint8 (size, size, 3)
    scale: float


def package_version(package: str) -> str:
    """The version of `package`: pinned for the sdist, else the installed one."""
    if package == OCRMYPDF_SDIST[0]:
        return OCRMYPDF_SDIST[1]
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise InputError(
            f"{package} is not installed; it ships sample images: pip install -e '.[test]'"
        ) from exc


def _installed_file(source: Source) -> Path:
    package_version(source.package)  # a clear error if it is missing
    spec = importlib.util.find_spec(source.module)
    path = Path(next(iter(spec.submodule_search_locations))) / source.path
    if not path.is_file():
        raise InputError(f"{source.package} {package_version(source.package)}: no {source.path}")
    return path


def _fetch_sdist(dest: Path) -> Path:
    """The OCRmyPDF source distribution (its wheel has no test resources), via pip."""
    name, version = OCRMYPDF_SDIST
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    cmd += ["--no-binary", name, "-d", str(dest), f"{name}=={version}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    archive = dest / f"{name}-{version}.tar.gz"
    if result.returncode != 0 or not archive.is_file():
        raise ToolError(f"pip download failed: {' '.join(cmd)}\n{result.stderr.strip()[-2000:]}")
    return archive


def _sdist_file(source: Source) -> Path:
    """A member of the OCRmyPDF sdist, from tilecc's cache, else extracted from a fresh
    download; sha256-checked, written atomically."""
    name, version = OCRMYPDF_SDIST
    folder = cache_dir() / "images" / f"{name}-{version}"
    dest = folder / Path(source.path).name
    if dest.is_file() and sha256(dest) == source.sha256:
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        archive = _fetch_sdist(Path(tmp_name))
        with tarfile.open(archive) as tar:
            for src in (s for s in SOURCES.values() if s.package == name):
                member = tar.extractfile(f"{name}-{version}/{src.path}")
                if member is None:
                    raise ToolError(f"{archive.name}: no {src.path}")
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part.")
                with os.fdopen(fd, "wb") as out:
                    out.write(member.read())
                if sha256(Path(tmp)) != src.sha256:
                    os.unlink(tmp)
                    raise ToolError(f"{archive.name}:{src.path}: sha256 mismatch")
                os.replace(tmp, folder / Path(src.path).name)
    return dest


def source_file(name: str) -> Path:
    """The local file of source `name` (fetching the sdist once if it is needed)."""
    if name not in SOURCES:
        raise InputError(f"unknown text image '{name}' (known: {', '.join(SOURCES)})")
    source = SOURCES[name]
    return _sdist_file(source) if source.sha256 else _installed_file(source)


def load_rgb(name: str) -> np.ndarray:
    """Source `name` as RGB uint8 (H, W, 3); transparency composited onto white, as the
    image would show on a page."""
    from PIL import Image

    with Image.open(source_file(name)) as image:
        rgba = image.convert("RGBA")
    page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(page, rgba).convert("RGB"))


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """`image` scaled to fit a size x size canvas (up or down), padded right and bottom with
    the median colour of its border (the page's background, so the padding adds no edge det
    could take for text). Returns (canvas, scale)."""
    from PIL import Image

    height, width = image.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC))
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = np.median(border, axis=0).astype(np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, scale


def crop_region(image: np.ndarray, region: tuple[float, float, float, float]) -> np.ndarray:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = region
    return image[round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)]


def samples(split: str, size: int = 640) -> list[Sample]:
    """The det inputs of `split` ("calibration" or "evaluation"), each size x size."""
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}' (one of: {', '.join(SPLITS)})")
    out = []
    for view in VIEWS:
        if view.split == split:
            image = np.ascontiguousarray(crop_region(load_rgb(view.source), view.region))
            canvas, scale = letterbox(image, size)
            out.append(Sample(view, image, canvas, scale))
    return out


def provenance() -> list[dict[str, str]]:
    """One row per view: split, view, package, version, path inside it, region, what it
    shows, sha256 of the file used."""
    rows = []
    for view in VIEWS:
        source = SOURCES[view.source]
        where = source.path if source.sha256 else f"{source.module}/{source.path}"
        rows.append(
            {
                "split": view.split,
                "view": view.name,
                "package": source.package,
                "version": package_version(source.package),
                "path": where + (" (sdist)" if source.sha256 else ""),
                "region": view.note,
                "shows": source.shows,
                "sha256": sha256(source_file(view.source))[:12],
            }
        )
    return rows
