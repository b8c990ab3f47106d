/* npu_glue.c: what the generated functions share: the core, per-subgraph stats, the TVM FFI
 * calling convention, and the `tilecc_npu_report` / `tilecc_npu_reset` functions.
 * The codegen defines TILECC_NPU_NUM_SUBGRAPHS, tilecc_npu_names and tilecc_npu_config
 * before this file. */
#include <tvm/ffi/c_api.h>
#include <stdio.h>

#ifdef __cplusplus
#define TILECC_NPU_EXPORT extern "C" TVM_FFI_DLL_EXPORT
#else
#define TILECC_NPU_EXPORT TVM_FFI_DLL_EXPORT
#endif

static npu_core tilecc_npu_core;
static int tilecc_npu_ready = 0;
static npu_stats tilecc_npu_stats[TILECC_NPU_NUM_SUBGRAPHS];

/* The data of a tensor argument (a DLTensor* or a tvm::ffi::Tensor object). */
static void* tilecc_npu_data(const TVMFFIAny* arg) {
  DLTensor* t = arg->type_index == kTVMFFIDLTensorPtr
                    ? (DLTensor*)arg->v_ptr
                    : (DLTensor*)((char*)arg->v_obj + sizeof(TVMFFIObject));
  return (char*)t->data + t->byte_offset;
}

static int tilecc_npu_raise(const char* subgraph, const char* message) {
  char text[512];
  snprintf(text, sizeof(text), "npu subgraph %s: %s", subgraph, message);
  TVMFFIErrorSetRaisedFromCStr("RuntimeError", text);
  return -1;
}

typedef int (*tilecc_npu_body)(npu_core*, const TVMFFIAny*);

static int tilecc_npu_call(int index, const char* name, tilecc_npu_body body,
                           const TVMFFIAny* args, int32_t num_args, int32_t expected,
                           TVMFFIAny* ret) {
  if (num_args != expected) return tilecc_npu_raise(name, "wrong number of arguments");
  for (int32_t i = 0; i < num_args; ++i)
    if (args[i].type_index != kTVMFFIDLTensorPtr && args[i].type_index != kTVMFFITensor)
      return tilecc_npu_raise(name, "argument is not a tensor");
  if (!tilecc_npu_ready) {
    if (npu_core_init(&tilecc_npu_core, &tilecc_npu_config))
      return tilecc_npu_raise(name, "cannot allocate the NPU's buffers");
    tilecc_npu_ready = 1;
  }
  tilecc_npu_core.error[0] = 0;
  npu_core_bind(&tilecc_npu_core, &tilecc_npu_stats[index]);
  tilecc_npu_stats[index].calls++;
  if (body(&tilecc_npu_core, args)) return tilecc_npu_raise(name, tilecc_npu_core.error);
  ret->type_index = kTVMFFINone;
  ret->zero_padding = 0;
  ret->v_int64 = 0;
  return 0;
}

/* JSON: the configuration and, per subgraph, what the simulator counted since the last reset. */
TILECC_NPU_EXPORT int __tvm_ffi_tilecc_npu_report(void* self, const TVMFFIAny* args,
                                                  int32_t num_args, TVMFFIAny* ret) {
  (void)self; (void)args; (void)num_args;
  size_t cap = 512 + (size_t)TILECC_NPU_NUM_SUBGRAPHS * 512, len = 0;
  char* text = (char*)malloc(cap);
  if (!text) return tilecc_npu_raise("report", "out of memory");
  const npu_config* c = &tilecc_npu_config;
  len += (size_t)snprintf(text + len, cap - len,
      "{\"config\": {\"L1\": %lld, \"UB\": %lld, \"L0A\": %lld, \"L0B\": %lld, \"L0C\": %lld, "
      "\"clock_mhz\": %d}, \"subgraphs\": [",
      (long long)c->size[0], (long long)c->size[1], (long long)c->size[2], (long long)c->size[3],
      (long long)c->size[4], c->clock_mhz);
  for (int i = 0; i < TILECC_NPU_NUM_SUBGRAPHS; ++i) {
    const npu_stats* s = &tilecc_npu_stats[i];
    len += (size_t)snprintf(text + len, cap - len,
        "%s{\"name\": \"%s\", \"calls\": %llu, \"cycles\": %llu, \"cube\": %llu, "
        "\"vector\": %llu, \"mte1\": %llu, \"dma\": %llu, \"macs\": %llu, \"dma_in\": %llu, "
        "\"dma_out\": %llu, \"peak\": {\"L1\": %lld, \"UB\": %lld, \"L0A\": %lld, \"L0B\": %lld, "
        "\"L0C\": %lld}}",
        i ? ", " : "", tilecc_npu_names[i], (unsigned long long)s->calls,
        (unsigned long long)s->total, (unsigned long long)s->cube, (unsigned long long)s->vector,
        (unsigned long long)s->mte1, (unsigned long long)s->dma, (unsigned long long)s->macs,
        (unsigned long long)s->dma_in, (unsigned long long)s->dma_out, (long long)s->peak[0],
        (long long)s->peak[1], (long long)s->peak[2], (long long)s->peak[3], (long long)s->peak[4]);
  }
  len += (size_t)snprintf(text + len, cap - len, "]}");
  TVMFFIByteArray bytes = {text, len};
  int rc = TVMFFIStringFromByteArray(&bytes, ret);
  free(text);
  return rc;
}

TILECC_NPU_EXPORT int __tvm_ffi_tilecc_npu_reset(void* self, const TVMFFIAny* args,
                                                 int32_t num_args, TVMFFIAny* ret) {
  (void)self; (void)args; (void)num_args;
  memset(tilecc_npu_stats, 0, sizeof(tilecc_npu_stats));
  ret->type_index = kTVMFFINone;
  ret->zero_padding = 0;
  ret->v_int64 = 0;
  return 0;
}
