# RUN: tilecc opt %s --passes cse,dce
# CHECK-LABEL: def main
# CHECK:       R.add(x, x)
# CHECK-NOT:   R.add(x, x)
# CHECK:       R.multiply(a, a)
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((2, 3), dtype="float32")) -> R.Tensor((2, 3), dtype="float32"):
        with R.dataflow():
            a = R.add(x, x)
            b = R.add(x, x)
            y = R.multiply(a, b)
            R.output(y)
        return y
