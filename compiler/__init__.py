"""tilecc.compiler: ONNX import, pipelines, build, run and the command line."""
