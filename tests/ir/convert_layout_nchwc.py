# RUN: tilecc opt %s --passes convert-layout-nchwc{block=8},cancel-inverse-pairs
# CHECK-LABEL: def main
# CHECK:       R.layout_transform(x
# CHECK:       R.nn.conv2d({{.*}}data_layout="NCHW8c", kernel_layout="OIHW8i8o", out_layout="NCHW8c"
# CHECK:       b: R.Tensor((1, 2, 8, 8, 8), dtype="float32") = R.maximum(
# CHECK-NOT:   R.layout_transform(b
# CHECK:       R.nn.conv2d(b, {{.*}}data_layout="NCHW8c", kernel_layout="OIHW8i8o"
# CHECK:       y: R.Tensor((1, 8, 8, 8), dtype="float32") = R.layout_transform(
# CHECK:       return
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(
        x: R.Tensor((1, 16, 8, 8), dtype="float32"),
        w1: R.Tensor((16, 16, 3, 3), dtype="float32"),
        w2: R.Tensor((8, 16, 1, 1), dtype="float32"),
    ) -> R.Tensor((1, 8, 8, 8), dtype="float32"):
        with R.dataflow():
            a = R.nn.conv2d(x, w1, padding=[1, 1, 1, 1])
            b = R.maximum(a, R.const(0.0, "float32"))
            y = R.nn.conv2d(b, w2)
            R.output(y)
        return y
