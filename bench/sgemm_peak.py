"""The host's practical fp32 matmul peak: NumPy's BLAS sgemm at a fixed thread count.

Benchmarks report kernel GFLOP/s as a percentage of this. BLAS reads its thread count once, when
it loads, so the measurement runs in a fresh interpreter with the count in its environment;
the caller's NumPy threads are untouched.

    .venv/bin/python bench/sgemm_peak.py [--threads 2] [--n 1024]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

# Runs in the child: square sgemm, median of `repeat` timed calls after two warm-ups.
_MEASURE = """
import statistics, sys, time
import numpy as np
n, repeat = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
out = np.empty((n, n), np.float32)
times = []
for i in range(repeat + 2):
    start = time.perf_counter()
    np.matmul(a, b, out=out)
    times.append(time.perf_counter() - start)
print(2 * n**3 / statistics.median(times[2:]) / 1e9)
"""


def sgemm_peak_gflops(threads: int, n: int = 1024, repeat: int = 20) -> float:
    """Median GFLOP/s of an n x n x n float32 NumPy matmul using `threads` BLAS threads."""
    count = str(threads)
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": count,
        "OMP_NUM_THREADS": count,
        "MKL_NUM_THREADS": count,
    }
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(n), str(repeat)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=1024)
    args = parser.parse_args()
    gflops = sgemm_peak_gflops(args.threads, args.n)
    print(f"sgemm {args.n}^3, {args.threads} threads: {gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
