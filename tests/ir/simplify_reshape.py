# RUN: tilecc opt %s --passes simplify-reshape
# The channel shuffle (reshape, permute_dims, reshape) stays; the flatten/reshape tail folds.
# CHECK-LABEL: def main
# CHECK:       R.reshape(x, R.shape([1, 2, 4, 4, 4]))
# CHECK:       R.permute_dims(a, axes=[0, 2, 1, 3, 4])
# CHECK-NOT:   R.flatten
# CHECK:       R.reshape(t, R.shape([1, 8, 16]))
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((1, 8, 4, 4), dtype="float32")) -> R.Tensor((1, 8, 16), dtype="float32"):
        with R.dataflow():
            a = R.reshape(x, R.shape([1, 2, 4, 4, 4]))
            t = R.permute_dims(a, axes=[0, 2, 1, 3, 4])
            b = R.reshape(t, R.shape([1, 8, 4, 4]))
            f = R.flatten(b)
            y = R.reshape(f, R.shape([1, 8, 16]))
            R.output(y)
        return y
