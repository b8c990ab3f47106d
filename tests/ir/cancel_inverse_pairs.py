# RUN: tilecc opt %s --passes cancel-inverse-pairs
# CHECK-LABEL: def main
# CHECK-NOT:   R.permute_dims
# CHECK:       R.nn.relu(x)
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((1, 3, 8, 8), dtype="float32")) -> R.Tensor((1, 3, 8, 8), dtype="float32"):
        with R.dataflow():
            a = R.permute_dims(x, axes=[0, 2, 3, 1])
            b = R.permute_dims(a, axes=[0, 3, 1, 2])
            y = R.nn.relu(b)
            R.output(y)
        return y
