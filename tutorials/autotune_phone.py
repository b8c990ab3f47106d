"""Autotune a real model's kernels for an aarch64 phone, then compile with the records.

tilecc's second job, on PP-OCR's text-direction classifier (cls):

    model --extract--> tasks (conv / dense workload x template that can compute it)
    task --XGBoost-guided search--> candidates --measure (isolated process)--> records (JSON lines)
    records --tilecc compile --tuning-records--> .so with the best configuration per kernel

On a phone, candidates would be timed on the device (a TVM RPC tracker plugs in as another
measurer). Here there is no phone: arm-cpu candidates are cross-compiled for aarch64 and run
under qemu-aarch64, which proves each configuration computes the right numbers but says nothing
about speed (emulated time is not speed). So this tutorial also tunes the same model for this
x86 host, where measurements are real, to show the search finding faster configurations.

Run it with `.venv/bin/python tutorials/autotune_phone.py [--out-dir DIR]`. The command line:

    tilecc tune cls.onnx --target arm-cpu --trials 2 --max-tasks 3 -o records.json
    tilecc compile cls.onnx --target arm-cpu --tuning-records records.json -o cls.so
    tilecc run cls.so --compare-ort
"""

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from tilecc.compiler import api
from tilecc.compiler.assets import model_path
from tilecc.compiler.reference import compare, ort_run
from tilecc.compiler.sample_inputs import ppocr_input
from tilecc.compiler.tuning import extract_tasks
from tilecc.targets import get_target


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", type=Path, default=None, help="keep records and .so here")
    parser.add_argument("--trials", type=int, default=2, help="arm-cpu trials per task")
    args = parser.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="tilecc-autotune-"))
    onnx_path, shape = model_path("ppocr-cls"), [1, 3, 48, 192]

    # 1. Tasks. tilecc runs the target's graph pipeline (so workloads carry the blocked layout
    #    the compiled model will use: NCHW4c for NEON) and lists each conv / dense workload with
    #    every template that can compute it, heaviest first.
    imported = api.import_model(onnx_path, {"x": shape})
    tasks = extract_tasks(imported, get_target("arm-cpu"))
    print(f"{len(tasks)} tuning tasks for arm-cpu; the heaviest:")
    for task in tasks[:3]:
        print(f"  {task.template.name:16s} {task.workload.describe()}  x{task.count}")

    # 2. Tune for the phone. Each candidate configuration is built for aarch64, linked into a
    #    small .so and run under qemu against the template's NumPy reference; a candidate that
    #    crashes, hangs or computes wrong numbers is recorded as such and the search goes on.
    #    Every result is appended to the records file at once (a killed run loses nothing, and
    #    running the same command again resumes).
    records = out_dir / "records.json"
    api.tune_model(onnx_path, "arm-cpu", records, args.trials, {"x": shape}, max_tasks=3)
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    statuses = Counter(line["status"] for line in lines if "status" in line)
    print(f"arm-cpu records: {dict(statuses)} (correct under qemu; untimed)")

    # 3. The same search on this host, where times are real: XGBoost learns from each batch
    #    which knob values run fast and proposes the next candidates.
    api.tune_model(onnx_path, "x86", records, 8, {"x": shape}, max_tasks=2)
    for task in extract_tasks(imported, get_target("x86"))[:2]:
        timed = [
            line
            for line in map(json.loads, records.read_text().splitlines())
            if line.get("workload") == task.workload.key()
            and line.get("template") == task.template.name
            and line.get("gflops")
        ]
        if timed:
            first, best = timed[0]["gflops"], max(t["gflops"] for t in timed)
            print(
                f"x86 {task.template.name} {task.workload.describe()}: default "
                f"{first:.1f} GFLOP/s, best of {len(timed)} {best:.1f} GFLOP/s"
            )

    # 4. Compile for the phone with the records. A kernel takes the fastest timed record for
    #    its workload on this target; arm-cpu records from qemu carry no time, so here every
    #    kernel keeps its template's NEON default. Records timed on a device would be used.
    so_path = api.compile_model(
        onnx_path, "arm-cpu", out_dir / "cls.so", {"x": shape}, tuning_records=records
    )
    print(f"wrote {so_path} (aarch64)")

    # 5. Run it under qemu-aarch64 and check it against ONNX Runtime on the same input.
    inputs = {"x": ppocr_input("cls", shape)}
    ours = api.run_model(so_path, inputs)
    theirs = ort_run(onnx_path, inputs)
    worst = max(d.max_abs for d in compare(ours, theirs))
    status = "matches ONNX Runtime" if worst <= 1e-4 else "DIFFERS from ONNX Runtime"
    print(f"max abs difference {worst:.2e}: {status}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
