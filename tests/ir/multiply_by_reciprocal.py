# RUN: tilecc opt %s --passes multiply-by-reciprocal
# CHECK-LABEL: def main
# CHECK-NOT:   R.divide
# CHECK:       R.multiply(x, R.const(0.5, "float32"))
# CHECK:       R.multiply({{.*}}, R.const(4.0, "float32"))
# CHECK:       R.quantize({{.*}}, R.const(1.0, "float32"), R.const(0, "int8")
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((1, 8), dtype="float32")) -> R.Tensor((1, 8), dtype="uint8"):
        with R.dataflow():
            y = R.divide(x, R.const(2.0, "float32"))
            q = R.quantize(y, R.const(0.25, "float32"), R.const(0, "int8"), -1, "uint8")
            R.output(q)
        return q
