/* npu_sim.h: a simulated Ascend-like NPU core, the runtime of tilecc's `npu` target.
 *
 * The core has a cube unit (16x16x16 fp16 matrix multiply per cycle, fp32 accumulation in
 * L0C), a vector unit (fp16 lanes), on-chip buffers L1, UB (unified buffer), L0A, L0B, L0C,
 * and DMA between DDR and L1 / UB.  Every kernel below runs on real data in those buffers and
 * checks each access against the buffer's size, so a tiling that does not fit is an error, not
 * a silent overflow.  Cycles are counted per unit with the cost model in npu_sim.c
 * (docs/NPU.md quotes it).
 *
 * Layouts (fp16 bits in uint16_t):
 *   feature map in DDR  5HD: [N][C1][P = H*W][16], channels zero-padded to C1*16
 *   conv weights in DDR FRACTAL_Z: [K1 = C1in*KH*KW][N1 = C1out][16 k0][16 n0]
 *   depthwise weights   [C1][KH*KW][16]
 *   L0A [m1][k1][16 m0][16 k0], L0B [k1][n1][16 k0][16 n0], L0C fp32 [n1][m][16 n0]
 *   a UB tile ("slot") [n1][m][16]
 *
 * The generated code (tilecc/targets/npu/codegen.py) decides the tiles; the kernels here
 * run the loop nests over those tiles.
 */
#ifndef TILECC_NPU_SIM_H_
#define TILECC_NPU_SIM_H_

#include <stdint.h>

enum npu_buffer { NPU_L1, NPU_UB, NPU_L0A, NPU_L0B, NPU_L0C, NPU_NUM_BUFFERS };

typedef struct {
  int64_t size[NPU_NUM_BUFFERS]; /* bytes */
  int dma_bytes_per_cycle;       /* DDR <-> L1 / UB */
  int dma_latency;               /* cycles per DMA transfer */
  int mte1_bytes_per_cycle;      /* L1 -> L0A / L0B (img2col included) */
  int vector_lanes;              /* fp16 elements per vector cycle */
  int issue_cycles;              /* per cube / vector instruction */
  int clock_mhz;
} npu_config;

typedef struct {
  uint64_t cube, vector, mte1, dma, total; /* cycles */
  uint64_t macs;                           /* useful multiply-adds */
  uint64_t dma_in, dma_out;                /* bytes */
  int64_t peak[NPU_NUM_BUFFERS];           /* bytes */
  uint64_t calls;
} npu_stats;

typedef struct {
  npu_config cfg;
  uint8_t* buf[NPU_NUM_BUFFERS];
  npu_stats* stats;
  uint64_t op_cube, op_vector, op_mte1, op_dma; /* the running op */
  char error[256];
} npu_core;

/* Vector program: what a kernel does to each output tile after its anchor (conv, pooling...)
 * has written slot 0.  Each instruction reads slot a (and b) and writes slot dst. */
enum npu_vop_code {
  NPU_V_LOAD,      /* dst <- tile of operand tensor b (same shape) */
  NPU_V_LOAD_BCAST,/* dst <- operand tensor b of shape [N][C1][1][16], broadcast over pixels */
  NPU_V_ADD, NPU_V_SUB, NPU_V_MUL, NPU_V_DIV, NPU_V_MAX, NPU_V_MIN, /* binary */
  NPU_V_RELU, NPU_V_SIGMOID, NPU_V_TANH, NPU_V_EXP, NPU_V_COPY,      /* unary */
};
enum npu_operand_kind { NPU_B_NONE, NPU_B_SLOT, NPU_B_IMM, NPU_B_CHAN };
typedef struct {
  uint8_t code, dst, a, kind; /* kind: how b is read */
  int16_t b;                  /* slot, or channel-constant table index */
  uint8_t swap;               /* compute op(b, a) */
  float imm;
} npu_vop;

typedef struct {
  const npu_vop* ops;
  int num_ops;
  int num_slots;
  int result;                     /* the slot stored to the output */
  const uint16_t* const* chan;    /* per-channel constants, fp16, C1*16 each */
  const uint16_t* const* operands;/* operand tensors (5HD, DDR) */
  int channels;                   /* true channels of the result; padding lanes are zeroed */
} npu_program;

typedef struct {
  int n, c1, p; /* batch, channel blocks, pixels (H*W) */
} npu_shape;

/* One core's lifetime, and switching the stats a kernel charges. */
int npu_fail(npu_core* core, const char* what);
int npu_core_init(npu_core* core, const npu_config* cfg);
void npu_core_free(npu_core* core);
void npu_core_bind(npu_core* core, npu_stats* stats);

/* fp16 storage */
uint16_t npu_f32_to_f16(float x);
float npu_f16_to_f32(uint16_t h);

/* Boundary conversion: fp32 tensor (strided view as N,C,H,W) <-> fp16 5HD in DDR. */
int npu_to_5hd(npu_core* core, const float* src, const int64_t shape[4],
               const int64_t strides[4], uint16_t* dst);
int npu_from_5hd(npu_core* core, const uint16_t* src, const int64_t shape[4],
                 const int64_t strides[4], float* dst);

typedef struct {
  int n, c1_in, h, w, c1_out, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  int m_tile;   /* output pixels per tile (multiple of 16) */
  int n_tile;   /* output channel blocks per tile */
  int c1_tile;  /* input channel blocks per L1 slab */
  int k_tile;   /* k blocks (of 16) per L0A / L0B load */
  int64_t macs; /* useful multiply-adds (unpadded), for the utilisation figure */
} npu_conv_desc;
int npu_conv2d(npu_core* core, const npu_conv_desc* d, const uint16_t* in,
               const uint16_t* weight, const float* bias, const npu_program* prog,
               uint16_t* out);

enum npu_window_kind { NPU_WIN_DEPTHWISE, NPU_WIN_MAX, NPU_WIN_AVG, NPU_WIN_AVG_NOPAD };
typedef struct {
  int kind, n, c1, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  int rows_tile;    /* output rows per tile */
  int in_rows_tile; /* input rows per UB load (a large window reads several) */
  int c1_tile;      /* channel blocks per tile */
} npu_window_desc;
int npu_window(npu_core* core, const npu_window_desc* d, const uint16_t* in,
               const uint16_t* weight, const float* bias, const npu_program* prog,
               uint16_t* out);

/* A vector program alone over a tensor's tiles (its LOADs read the inputs). */
typedef struct {
  npu_shape shape;
  int m_tile, n_tile;
} npu_eltwise_desc;
int npu_eltwise(npu_core* core, const npu_eltwise_desc* d, const npu_program* prog,
                uint16_t* out);

/* Softmax over the channel axis (the last axis of a 2-D / 3-D tensor; see codegen.py). */
typedef struct {
  npu_shape shape;
  int channels; /* true channel count (C1*16 minus padding) */
  int m_tile;
} npu_softmax_desc;
int npu_softmax(npu_core* core, const npu_softmax_desc* d, const uint16_t* in,
                const npu_program* prog, uint16_t* out);

/* Account one op: units overlap (double buffering), so the op costs its busiest unit. */
void npu_op_begin(npu_core* core);
void npu_op_end(npu_core* core);

#endif
