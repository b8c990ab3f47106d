"""Files tilecc needs that come from package registries: the PP-OCR models and wheels.

Everything lands in one cache (`$TILECC_CACHE`, default `~/.cache/tilecc`), is checked by sha256,
and is fetched only when missing, so a second `.ci/setup` is a no-op. Writes are atomic: a file
appears under its final name only once it is complete and verified.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import ModelError, ToolError

RAPIDOCR_WHEEL = "rapidocr-onnxruntime==1.4.4"

# name -> (path inside the rapidocr wheel, sha256). The PP-OCR models tilecc is tested on.
MODELS = {
    "ppocr-det": (
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    ),
    "ppocr-rec": (
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    ),
    "ppocr-cls": (
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    ),
}


def cache_dir() -> Path:
    path = Path(os.environ.get("TILECC_CACHE", Path.home() / ".cache" / "tilecc"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip_download(requirement: str, dest: Path, platform: str | None = None) -> Path:
    """Download one wheel (no dependencies) into `dest` and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest)]
    cmd += ["--only-binary=:all:"]
    if platform:
        cmd += ["--platform", platform, "--python-version", "3.11"]
    cmd.append(requirement)
    before = set(dest.glob("*.whl"))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolError(f"pip download failed: {' '.join(cmd)}\n{result.stderr.strip()[-2000:]}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [w for w in dest.glob("*.whl") if w.name.lower().startswith(name)]
    new = [w for w in wheels if w not in before] or wheels
    if not new:
        raise ToolError(f"pip download left no wheel for {requirement} in {dest}")
    return max(new, key=lambda w: w.stat().st_mtime)


def extract_member(wheel: Path, member: str, dest: Path, expected_sha: str | None = None) -> Path:
    """Copy `member` out of a wheel to `dest` atomically, verifying its sha256 if given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        zipfile.ZipFile(wheel) as zf,
        tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, prefix=f".{dest.name}.") as tmp,
    ):
        tmp.write(zf.read(member))
    tmp_path = Path(tmp.name)
    if expected_sha and sha256(tmp_path) != expected_sha:
        tmp_path.unlink()
        raise ToolError(f"{wheel.name}:{member}: sha256 mismatch (expected {expected_sha})")
    os.chmod(tmp_path, 0o644)
    os.replace(tmp_path, dest)
    return dest


def model_path(name: str) -> Path:
    """Path of a cached model (`ppocr-det`, `ppocr-cls`, `ppocr-rec`), fetching it if needed."""
    if name not in MODELS:
        raise ModelError(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    member, digest = MODELS[name]
    dest = cache_dir() / "models" / Path(member).name
    if dest.exists() and sha256(dest) == digest:
        return dest
    wheels = cache_dir() / "wheels"
    existing = sorted(wheels.glob("rapidocr_onnxruntime-1.4.4-*.whl"))
    wheel = existing[0] if existing else pip_download(RAPIDOCR_WHEEL, wheels)
    return extract_member(wheel, member, dest, digest)


def ensure_models(progress=print) -> dict[str, Path]:
    paths = {}
    for name in MODELS:
        progress(f"  model {name}")
        paths[name] = model_path(name)
    return paths
