"""PP-OCRv4 det / cls / rec on this host: tilecc x86 vs ONNX Runtime, same run, same threads,
and the five kernels that take the most time in each.

    .venv/bin/python bench/ppocr.py [--threads 2] [--repeat 20] [--top-kernels 5]

Medians of `--repeat` timed runs after two warm-ups; inputs are rendered text (sample_inputs).
"""

from __future__ import annotations

import argparse
import sys

from tilecc.compiler.assets import model_path
from tilecc.compiler.benchmark import bench_model, format_bench
from tilecc.compiler.sample_inputs import ppocr_input

MODELS = [
    ("det", (1, 3, 640, 640)),
    ("det", (1, 3, 320, 320)),
    ("cls", (1, 3, 48, 192)),
    ("rec", (1, 3, 48, 320)),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--top-kernels", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for kind, shape in MODELS:
        result = bench_model(
            model_path(f"ppocr-{kind}"),
            "x86",
            {"x": list(shape)},
            args.threads,
            args.repeat,
            args.top_kernels,
            inputs={"x": ppocr_input(kind, shape)},
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
        print(format_bench(result), flush=True)
        ours, theirs = result["tilecc"].median_ms, result["ort"].median_ms
        rows.append((kind, "x".join(map(str, shape)), ours, theirs, ours / theirs))
    print(f"\n{'model':6s} {'input':14s} {'tilecc ms':>10s} {'ORT ms':>8s} {'ratio':>7s}")
    for kind, shape, ours, theirs, ratio in rows:
        print(f"{kind:6s} {shape:14s} {ours:10.2f} {theirs:8.2f} {ratio:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
