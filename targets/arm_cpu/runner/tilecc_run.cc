// tilecc_run: run a tilecc-compiled model (.so) on the CPU with the TVM Relax VM.
//
//   tilecc_run MODEL.so --info
//       print the model's metadata (a JSON string) to stdout
//   tilecc_run MODEL.so OUT_DIR IN0.npy [IN1.npy ...] [--repeat N]
//       run "main" on the inputs and write OUT_DIR/out0.npy, out1.npy, ...; with --repeat N,
//       run N times and print the median wall-clock time to stderr
//
// This file is also the deploy example: an app does the same four steps as Run() below
// (load the .so, create the VM, wrap its buffers as tensors, call "main") and links the same two
// libraries, libtvm_runtime.so (the Relax VM) and libtvm_ffi.so (objects, functions, errors).
// Only the tvm-ffi C++ API is used; the .npy code stands in for the app's own input and output.
//
// Every failure prints one line, "tilecc_run: error: ...", to stderr and exits 1.

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace ffi = tvm::ffi;

// Allocator arguments of the VM's "vm_initialization" (tvm/runtime/vm.py, VirtualMachine).
constexpr int kPooledAllocator = 2;
// TVM-generated kernels may assume 64-byte aligned buffers (TVM's kAllocAlignment).
constexpr size_t kAlignment = 64;

// A user-facing failure; main() prints its message as the one error line.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// Tensors: CPU memory owned by the tensor, so the VM can keep a reference as long as it needs.

struct AlignedCpuAlloc {
  void AllocData(DLTensor* tensor) {
    size_t bytes = ffi::GetDataSize(*tensor);
    // aligned_alloc wants a size that is a multiple of the alignment, and > 0.
    size_t rounded = std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    tensor->data = std::aligned_alloc(kAlignment, rounded);
    if (tensor->data == nullptr) {
      throw Failure("out of memory allocating " + std::to_string(bytes) + " bytes");
    }
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

ffi::Tensor EmptyCpuTensor(const std::vector<int64_t>& shape, DLDataType dtype) {
  DLDevice cpu{kDLCPU, 0};
  return ffi::Tensor::FromNDAlloc(AlignedCpuAlloc(), ffi::ShapeView(shape.data(), shape.size()),
                                  dtype, cpu);
}

// ---------------------------------------------------------------------------------------------
// Minimal .npy (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// versions 1-3, little-endian, C order, the dtypes below.

// npy type string without its byte-order character -> TVM dtype name.
struct NpyType {
  const char* npy;
  const char* tvm;
};
constexpr NpyType kNpyTypes[] = {
    {"f4", "float32"}, {"f2", "float16"}, {"i8", "int64"}, {"i4", "int32"},
    {"i1", "int8"},    {"u1", "uint8"},   {"b1", "bool"},
};

std::string SupportedNpyTypes() {
  std::string names;
  for (const NpyType& t : kNpyTypes) names += (names.empty() ? "" : ", ") + std::string(t.tvm);
  return names;
}

// The text of `key`'s value in the header dict: a quoted string without quotes, a tuple with its
// parentheses, or a bare word (True/False).
std::string HeaderValue(const std::string& header, const std::string& key,
                        const std::string& path) {
  size_t pos = header.find("'" + key + "'");
  if (pos == std::string::npos) throw Failure(path + ": .npy header has no '" + key + "'");
  pos = header.find(':', pos);
  if (pos == std::string::npos) throw Failure(path + ": malformed .npy header");
  pos = header.find_first_not_of(' ', pos + 1);
  if (pos == std::string::npos) throw Failure(path + ": malformed .npy header");
  char open = header[pos];
  size_t end;
  if (open == '\'' || open == '"') {
    end = header.find(open, pos + 1);
    if (end == std::string::npos) throw Failure(path + ": malformed .npy header");
    return header.substr(pos + 1, end - pos - 1);
  }
  if (open == '(') {
    end = header.find(')', pos);
    if (end == std::string::npos) throw Failure(path + ": malformed .npy header");
    return header.substr(pos, end - pos + 1);
  }
  end = header.find_first_of(",}", pos);
  return header.substr(pos, end - pos);
}

std::vector<int64_t> ParseShape(const std::string& tuple, const std::string& path) {
  std::vector<int64_t> shape;
  std::string inner = tuple.substr(1, tuple.size() - 2);  // drop "(" and ")"
  std::stringstream items(inner);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;  // "(3,)" has an empty tail
    try {
      shape.push_back(std::stoll(item));
    } catch (const std::exception&) {
      throw Failure(path + ": bad shape " + tuple + " in .npy header");
    }
  }
  return shape;
}

ffi::Tensor ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Failure(path + ": cannot open");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    throw Failure(path + ": not a .npy file");
  }
  int major = static_cast<unsigned char>(magic[6]);
  if (major < 1 || major > 3) {
    throw Failure(path + ": unsupported .npy version " + std::to_string(major));
  }
  // v1 stores the header length in 2 bytes, v2 and v3 in 4 (little-endian); v3 allows UTF-8.
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(len_bytes), major == 1 ? 2 : 4);
  uint32_t header_len = len_bytes[0] | len_bytes[1] << 8 | len_bytes[2] << 16 |
                        static_cast<uint32_t>(len_bytes[3]) << 24;
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw Failure(path + ": truncated .npy header");

  if (HeaderValue(header, "fortran_order", path) != "False") {
    throw Failure(path + ": Fortran-order arrays are not supported; save it C-ordered " +
                  "(numpy.ascontiguousarray)");
  }
  std::string descr = HeaderValue(header, "descr", path);
  if (descr.size() < 2 || descr[0] == '>') {
    throw Failure(path + ": dtype '" + descr + "' is not little-endian or not supported");
  }
  const NpyType* type = nullptr;
  for (const NpyType& t : kNpyTypes) {
    if (descr.substr(1) == t.npy) type = &t;
  }
  if (type == nullptr) {
    std::string supported = SupportedNpyTypes();
    throw Failure(path + ": unsupported dtype '" + descr + "' (supported: " + supported + ")");
  }
  std::vector<int64_t> shape = ParseShape(HeaderValue(header, "shape", path), path);

  ffi::Tensor tensor = EmptyCpuTensor(shape, ffi::StringToDLDataType(type->tvm));
  size_t bytes = ffi::GetDataSize(*tensor.GetDLTensorPtr());
  if (!in.read(static_cast<char*>(tensor.data_ptr()), static_cast<std::streamsize>(bytes))) {
    throw Failure(path + ": truncated data (expected " + std::to_string(bytes) + " bytes)");
  }
  return tensor;
}

void WriteNpy(const ffi::Tensor& tensor, const std::string& path) {
  if (tensor.device().device_type != kDLCPU) throw Failure(path + ": output is not in CPU memory");
  if (!tensor.IsContiguous()) throw Failure(path + ": output is not contiguous");
  std::string dtype = ffi::DLDataTypeToString(tensor.dtype());
  const NpyType* type = nullptr;
  for (const NpyType& t : kNpyTypes) {
    if (dtype == t.tvm) type = &t;
  }
  if (type == nullptr) throw Failure(path + ": cannot write output of dtype " + dtype);

  std::string shape = "(";
  for (int64_t dim : tensor.shape()) shape += std::to_string(dim) + ", ";
  // Python tuple syntax: "()", "(3,)", "(2, 3)".
  if (tensor.ndim() > 0) shape.erase(shape.size() - (tensor.ndim() == 1 ? 1 : 2));
  shape += ")";
  char order = type->npy[1] == '1' ? '|' : '<';  // one-byte types have no byte order
  std::string header = "{'descr': '" + std::string(1, order) + type->npy +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts at a multiple of 64 bytes, as numpy does; the header ends in '\n'.
  const size_t preamble = 10;  // magic (6) + version (2) + header length (2)
  header.append(kAlignment - (preamble + header.size() + 1) % kAlignment, ' ');
  header += '\n';

  std::ofstream out(path, std::ios::binary);
  uint16_t header_len = static_cast<uint16_t>(header.size());
  char len_bytes[2] = {static_cast<char>(header_len & 0xff), static_cast<char>(header_len >> 8)};
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  const char* data = static_cast<const char*>(tensor.data_ptr()) + tensor.byte_offset();
  out.write(data, static_cast<std::streamsize>(ffi::GetDataSize(*tensor.GetDLTensorPtr())));
  if (!out) throw Failure(path + ": cannot write");
}

// ---------------------------------------------------------------------------------------------
// The model.

// The Relax VM of a compiled model, ready to call.
ffi::Module LoadVirtualMachine(const std::string& model_path,
                               ffi::Optional<ffi::Module>* library = nullptr) {
  if (!std::filesystem::is_regular_file(model_path)) throw Failure(model_path + ": no such file");
  // The .so holds the compiled kernels and, in a data section, the VM bytecode; LoadFromFile
  // dlopens it and unpacks the bytecode into a "relax.VMExecutable" module (code registered by
  // libtvm_runtime.so, which is why the runner links it even though it calls nothing in it).
  // dlopen searches the library path for a name without a '/', so pass an absolute path.
  ffi::Module executable =
      ffi::Module::LoadFromFile(std::filesystem::absolute(model_path).string());
  if (library != nullptr) *library = executable;
  ffi::Optional<ffi::Function> load = executable->GetFunction("vm_load_executable");
  if (!load.has_value()) {
    throw Failure(model_path + ": not a Relax VM executable (no vm_load_executable)");
  }
  ffi::Module vm = (*load)().cast<ffi::Module>();
  // One (device type, device id, allocator) triple per device; the last one is the host. For a
  // CPU-only model the CPU is both, so it is given once, as tvm.runtime.vm.VirtualMachine does.
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  return vm;
}

ffi::Function GetVmFunction(const ffi::Module& vm, const std::string& name,
                            const std::string& model_path) {
  ffi::Optional<ffi::Function> func = vm->GetFunction(name);
  if (!func.has_value()) throw Failure(model_path + ": the model has no function '" + name + "'");
  return *func;
}

// Tensors of a result in order, tuples (ffi::Array) flattened depth-first.
void FlattenOutputs(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto tensor = value.as<ffi::Tensor>()) {
    out->push_back(*tensor);
  } else if (auto tuple = value.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *tuple) FlattenOutputs(item, out);
  } else if (auto shape = value.as<ffi::Shape>()) {  // an R.Shape output, written as int64
    std::vector<int64_t> dims{static_cast<int64_t>(shape->size())};
    ffi::Tensor tensor = EmptyCpuTensor(dims, ffi::StringToDLDataType("int64"));
    std::copy(shape->begin(), shape->end(), static_cast<int64_t*>(tensor.data_ptr()));
    out->push_back(tensor);
  } else {
    throw Failure("main returned a value of type " + value.GetTypeKey() +
                  ", not a tensor or tuple");
  }
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

const char* kUsage =
    "usage: tilecc_run MODEL.so --info | tilecc_run MODEL.so OUT_DIR IN0.npy [IN1.npy ...] "
    "[--repeat N]";

int Run(const std::vector<std::string>& args) {
  if (args.size() < 2) throw Failure(kUsage);
  const std::string& model_path = args[0];

  if (args[1] == "--info") {
    if (args.size() != 2) throw Failure(kUsage);
    ffi::Module vm = LoadVirtualMachine(model_path);
    ffi::String metadata = GetVmFunction(vm, "tilecc_metadata", model_path)().cast<ffi::String>();
    std::cout << std::string(metadata) << std::endl;
    return 0;
  }

  std::string out_dir;
  std::vector<std::string> input_paths;
  int repeat = 0;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--repeat") {
      if (i + 1 == args.size()) throw Failure("--repeat needs a number");
      try {
        repeat = std::stoi(args[++i]);
      } catch (const std::exception&) {
        repeat = -1;
      }
      if (repeat < 1) throw Failure("--repeat needs a positive number, got '" + args[i] + "'");
    } else if (out_dir.empty()) {
      out_dir = args[i];
    } else {
      input_paths.push_back(args[i]);
    }
  }
  if (out_dir.empty()) throw Failure(kUsage);

  // 1. Load the model and create its VM (once per app; the VM is reusable across calls).
  ffi::Optional<ffi::Module> library;
  ffi::Module vm = LoadVirtualMachine(model_path, &library);
  ffi::Function main_fn = GetVmFunction(vm, "main", model_path);

  // 2. Wrap the inputs as tensors; the VM checks their number, shapes and dtypes.
  std::vector<ffi::Tensor> inputs;
  for (const std::string& path : input_paths) inputs.push_back(ReadNpy(path));
  std::vector<ffi::AnyView> call_args(inputs.begin(), inputs.end());

  // 3. Call "main". Timing is wall clock of this process; under qemu-aarch64 it is emulated time.
  ffi::Any result;
  std::vector<double> millis;
  // A model with NPU subgraphs (target npu) counts what its simulated NPU does; the report
  // written in step 5 covers the last call only.
  ffi::Optional<ffi::Function> npu_reset =
      library.value()->GetFunction("tilecc_npu_reset", /*query_imports=*/true);
  for (int i = 0; i < std::max(repeat, 1); ++i) {
    if (npu_reset.has_value() && i == std::max(repeat, 1) - 1) (*npu_reset)();
    auto start = std::chrono::steady_clock::now();
    main_fn.CallPacked(call_args.data(), static_cast<int32_t>(call_args.size()), &result);
    std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
    millis.push_back(elapsed.count());
  }
  if (repeat > 0) {
    std::fprintf(
        stderr,
        "tilecc_run: main: median %.3f ms over %d runs (wall clock; emulated time under qemu)\n",
        Median(millis), repeat);
  }

  // 4. Read the outputs: one tensor, or a (nested) tuple of them.
  std::vector<ffi::Tensor> outputs;
  FlattenOutputs(result, &outputs);
  std::filesystem::create_directories(out_dir);
  for (size_t i = 0; i < outputs.size(); ++i) {
    WriteNpy(outputs[i],
             (std::filesystem::path(out_dir) / ("out" + std::to_string(i) + ".npy")).string());
  }

  // 5. A model with NPU subgraphs also reports what its simulated NPU counted.
  ffi::Optional<ffi::Function> report =
      library.value()->GetFunction("tilecc_npu_report", /*query_imports=*/true);
  if (report.has_value()) {
    std::ofstream(std::filesystem::path(out_dir) / "npu_report.json")
        << std::string((*report)().cast<ffi::String>()) << std::endl;
  }
  return 0;
}

// Errors from TVM span several lines (message, then a traceback); keep the message on one line.
std::string OneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const tvm::ffi::Error& err) {
    std::cerr << "tilecc_run: error: " << OneLine(err.kind() + ": " + err.message()) << std::endl;
  } catch (const std::exception& err) {
    std::cerr << "tilecc_run: error: " << OneLine(err.what()) << std::endl;
  }
  return 1;
}
