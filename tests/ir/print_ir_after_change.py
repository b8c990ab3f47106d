# RUN: tilecc opt %s --passes fold-constant,dce --print-ir-after-change 2>&1
# Only the pass that changed the module is printed (fold-constant removes what dce would).
# CHECK:     // -----// IR Dump After fold-constant //----- //
# CHECK-NOT: IR Dump After dce
# CHECK:     R.const(3
# from tvm.script import ir as I
# from tvm.script import relax as R


@I.ir_module
class Module:
    @R.function
    def main(x: R.Tensor((2,), dtype="float32")) -> R.Tensor((2,), dtype="float32"):
        with R.dataflow():
            c = R.add(R.const(1.0, "float32"), R.const(2.0, "float32"))
            y = R.add(x, c)
            R.output(y)
        return y
