# RUN: tilecc opt %s --passes dce
# CHECK-LABEL: def main
# CHECK:       R.add(x, x)
# CHECK-NOT:   R.multiply
# CHECK:       R.nn.relu(a)
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((2, 3), dtype="float32")) -> R.Tensor((2, 3), dtype="float32"):
        with R.dataflow():
            a = R.add(x, x)
            unused = R.multiply(x, x)
            y = R.nn.relu(a)
            R.output(y)
        return y
