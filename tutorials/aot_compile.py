"""Compile a real model ahead of time for an aarch64 phone, run it, and check it.

This walks tilecc's first job on PP-OCRv4's text detector:

    ONNX file --import--> Relax --lower--> TIR --LLVM (aarch64, NEON)--> det.so
    det.so --(C++ runner, qemu-aarch64 here; your app on a phone)--> outputs == ONNX Runtime's

Run it with `.venv/bin/python tutorials/aot_compile.py [--size 320] [--out-dir DIR]`. The same
steps on the command line:

    tilecc compile det.onnx --target arm-cpu --input-shapes "x:[1,3,320,320]" -o det.so
    tilecc run det.so --compare-ort
"""

import argparse
import tempfile
from pathlib import Path

from tilecc.compiler import api
from tilecc.compiler.assets import model_path
from tilecc.compiler.reference import compare, ort_run
from tilecc.compiler.sample_inputs import ppocr_input


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=320, help="det input height and width")
    parser.add_argument("--out-dir", type=Path, default=None, help="keep det.so here")
    args = parser.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="tilecc-tutorial-"))

    # 1. The model. PP-OCRv4 det ships inside the rapidocr-onnxruntime wheel; `.ci/setup` put it in
    #    tilecc's cache and checked its sha256. Its input is x: [N, 3, H, W], every dim but the
    #    channels dynamic. tilecc compiles for static shapes, so we bind them.
    onnx_path = model_path("ppocr-det")
    shape = [1, 3, args.size, args.size]
    print(f"model: {onnx_path.name}, input x: {shape}")

    # 2. Import. tilecc loads and checks the ONNX file, binds the shape, folds shape arithmetic
    #    to constants, and converts to Relax, with the weights kept as parameters.
    imported = api.import_model(onnx_path, {"x": shape})
    print(f"imported: {len(imported.params)} weight tensors, {imported.folded_nodes} nodes folded")

    # 3. Compile for arm-cpu: LLVM for aarch64-linux-gnu with NEON, linked by the aarch64 gcc into
    #    one .so with the weights, the Relax VM bytecode and a JSON description of inputs/outputs.
    so_path = api.compile_model(onnx_path, "arm-cpu", out_dir / "det.so", {"x": shape})
    print(f"wrote {so_path} ({so_path.stat().st_size / 1e6:.1f} MB, aarch64)")

    # 4. Load it. tilecc reads the ELF header, sees aarch64, and uses the arm-cpu runner: a C++
    #    program (targets/arm_cpu/runner/tilecc_run.cc) linked against TVM's aarch64 runtime,
    #    under qemu-aarch64. A phone app embeds the same few lines of C++.
    model = api.load(so_path)
    print(f"loaded: target {model.target.name}, inputs {model.inputs}, outputs {model.outputs}")

    # 5. Run on an image with real text (normalized as PP-OCR does) and compare with ONNX Runtime
    #    on this host. qemu's run time is emulation, not phone speed; correctness is what counts.
    inputs = {"x": ppocr_input("det", tuple(shape))}
    outputs = model.run(inputs)
    expected = ort_run(onnx_path, inputs)
    for diff in compare(outputs, expected):
        print(f"{diff.name}: max abs error {diff.max_abs:.2e} vs ONNX Runtime")
        assert diff.within(1e-4), diff
    text_pixels = (outputs["sigmoid_0.tmp_0"] > 0.3).mean()
    print(f"text probability > 0.3 on {text_pixels:.1%} of pixels; matches ONNX Runtime")


if __name__ == "__main__":
    main()
