# RUN: tilecc opt %s --passes fold-affine-chains,dce
# CHECK-LABEL: def main
# CHECK:       R.multiply(x, R.const(3.0, "float32"))
# CHECK-NEXT:  R.add({{.*}}, R.const(-1.0, "float32"))
# CHECK-NOT:   R.subtract
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((1, 8), dtype="float32")) -> R.Tensor((1, 8), dtype="float32"):
        with R.dataflow():
            a = R.multiply(x, R.const(1.5, "float32"))
            b = R.subtract(a, R.const(0.5, "float32"))
            y = R.multiply(b, R.const(2.0, "float32"))
            R.output(y)
        return y
