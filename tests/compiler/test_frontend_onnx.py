import numpy as np
import onnx
import pytest
from onnx_models import conv_relu, runtime_reshape, with_external_weight, with_unsupported_ops

from tilecc.compiler.errors import ModelError, ShapeError, UnsupportedOpsError
from tilecc.compiler.frontend_onnx import import_onnx, parse_input_shapes
from tilecc.compiler.onnx_fold import fold_constants


def test_parse_input_shapes_tvmc_syntax():
    shapes = parse_input_shapes(["x:[1,3,320,320]", "mask:[1, 5]"])
    assert shapes == {"x": [1, 3, 320, 320], "mask": [1, 5]}


def test_parse_input_shapes_several_in_one_item():
    assert parse_input_shapes(["a:[1,2],b:[3]"]) == {"a": [1, 2], "b": [3]}


@pytest.mark.parametrize("bad", ["x", "x:[1,a]", "x:[0,3]", "x:1,3"])
def test_parse_input_shapes_rejects(bad):
    with pytest.raises(ShapeError, match="--input-shapes"):
        parse_input_shapes([bad])


def test_static_model_imports_with_its_own_shapes():
    imported = import_onnx("m.onnx", model=conv_relu())
    assert [(i.name, i.shape, i.dtype) for i in imported.inputs] == [("x", (1, 3, 8, 8), "float32")]
    assert [(o.name, o.shape) for o in imported.outputs] == [("y", (1, 4, 8, 8))]
    assert list(imported.params) == ["w"]  # weights stay parameters until build


def test_dynamic_dim_without_shapes_names_input_and_dim():
    with pytest.raises(ShapeError, match=r"input 'x' dim 2 \('H'\) is dynamic"):
        import_onnx("m.onnx", model=conv_relu(dims=(1, 3, "H", "W")))


def test_input_shapes_bind_dynamic_dims():
    imported = import_onnx("m.onnx", {"x": [1, 3, 5, 7]}, model=conv_relu(dims=(1, 3, "H", "W")))
    assert imported.outputs[0].shape == (1, 4, 5, 7)


def test_input_shapes_conflicting_with_static_dim():
    with pytest.raises(ShapeError, match="dim 1 is 3 in the model, --input-shapes gives 4"):
        import_onnx("m.onnx", {"x": [1, 4, 8, 8]}, model=conv_relu())


def test_input_shapes_unknown_name_lists_inputs():
    with pytest.raises(ShapeError, match=r"unknown input\(s\) y .*inputs: x"):
        import_onnx("m.onnx", {"y": [1]}, model=conv_relu())


def test_shape_chain_folds_to_constant_reshape_target():
    model = runtime_reshape()
    for dim in model.graph.input[0].type.tensor_type.shape.dim[:1]:
        dim.dim_value = 2
    folded, count = fold_constants(model)
    ops = [n.op_type for n in folded.graph.node]
    assert ops == ["Reshape", "MatMul"]  # Shape..Concat evaluated away
    assert count == 10
    target = {i.name: onnx.numpy_helper.to_array(i) for i in folded.graph.initializer}["target"]
    assert target.tolist() == [2, 4, -1]


def test_fold_leaves_data_dependent_nodes():
    folded, count = fold_constants(conv_relu())
    assert count == 0
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Relu"]


def test_runtime_reshape_model_imports_and_matches_ort():
    import tvm
    from tvm import relax

    from tilecc.compiler.build import compile_imported
    from tilecc.compiler.reference import ort_run
    from tilecc.compiler.runtime import flatten_outputs
    from tilecc.targets import get_target

    model = runtime_reshape()
    imported = import_onnx("m.onnx", {"x": [2, 4, 6, 10]}, model=model)
    assert imported.outputs[0].shape == (2, 4, 5)
    vm = relax.VirtualMachine(compile_imported(imported, get_target("x86")), tvm.cpu())
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 10)).astype(np.float32)
    (got,) = flatten_outputs(vm["main"](tvm.runtime.tensor(x)))
    want = ort_run(model.SerializeToString(), {"x": x})["y"]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_unsupported_ops_are_all_listed_at_once():
    with pytest.raises(UnsupportedOpsError) as info:
        import_onnx("m.onnx", model=with_unsupported_ops())
    message = str(info.value)
    assert "3 unsupported op type(s)" in message
    assert 'Det x2 ("det0", "det1")' in message
    assert 'Celu x1 ("celu0")' in message
    assert 'com.example.FancyNorm x1 ("fancy0")' in message


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        import_onnx(tmp_path / "absent.onnx")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf\n" * 10)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        import_onnx(path)


def test_truncated_model(tmp_path):
    data = conv_relu().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=str(path)):
        import_onnx(path)


def test_external_data_outside_model_folder(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 1024)
    model = with_external_weight(conv_relu(), "../secret.bin")
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=r"initializer 'w' .*'../secret.bin' outside"):
        import_onnx(path)


def test_external_data_inside_model_folder_loads(tmp_path):
    model = conv_relu(channels=64)
    expected = onnx.numpy_helper.to_array(model.graph.initializer[0])  # save_model edits model
    path = tmp_path / "m.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="m.data", size_threshold=0
    )
    assert (tmp_path / "m.data").exists()
    imported = import_onnx(path)
    np.testing.assert_array_equal(imported.params["w"], expected)
