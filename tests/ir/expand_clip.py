# RUN: tilecc opt %s --passes expand-clip
# CHECK-LABEL: def main
# CHECK-NOT:   R.clip
# CHECK:       R.maximum(x, R.const(0.0, "float32"))
# CHECK:       R.minimum({{.*}}, R.const(6.0, "float32"))
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((1, 8, 4, 4), dtype="float32")) -> R.Tensor((1, 8, 4, 4), dtype="float32"):
        with R.dataflow():
            y = R.clip(x, 0, 6)
            R.output(y)
        return y
