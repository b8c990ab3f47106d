/* npu_sim.c: kernels and cost model of the simulated NPU core (see npu_sim.h).
 *
 * Cost model, in cycles of the core clock:
 *   DMA DDR <-> L1 / UB    dma_latency + ceil(bytes / dma_bytes_per_cycle)     per transfer
 *   L1 -> L0A / L0B (MTE1) ceil(bytes / mte1_bytes_per_cycle)                   per load
 *   cube                   issue_cycles + m1 * k1 * n1   (one 16x16x16 fractal a cycle)
 *   vector                 issue_cycles + ceil(elements / vector_lanes) * c,
 *                          c = 4 for exp / sigmoid / tanh, 2 for divide, else 1
 *   an op (one kernel call) max(cube, vector, MTE1, DMA): the units overlap through double
 *                          buffering, so an op takes as long as its busiest unit.
 * Cube utilisation = useful MACs / (4096 * cycles).
 */
#include "npu_sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPU_MIN(a, b) ((a) < (b) ? (a) : (b))
#define NPU_MAX(a, b) ((a) > (b) ? (a) : (b))
#define NPU_CEIL(a, b) (((a) + (b)-1) / (b))

static const char* npu_buffer_name[NPU_NUM_BUFFERS] = {"L1", "UB", "L0A", "L0B", "L0C"};

/* ---- fp16 ------------------------------------------------------------------------------- */

uint16_t npu_f32_to_f16(float x) { /* round to nearest even, with overflow to inf */
  uint32_t u;
  memcpy(&u, &x, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t exp = (u >> 23) & 0xffu;
  uint32_t man = u & 0x7fffffu;
  if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0u));
  int e = (int)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);
  if (e <= 0) { /* subnormal or zero */
    if (e < -10) return (uint16_t)sign;
    man |= 0x800000u;
    int shift = 14 - e;
    uint32_t half = man >> shift;
    uint32_t rest = man & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((uint32_t)e << 10) | (man >> 13);
  uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++; /* may carry into exp */
  return (uint16_t)(sign | half);
}

static float npu_f16_table[65536];
static int npu_f16_table_ready = 0;

static float f16_decode(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do { man <<= 1; e++; } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp - 15 + 127) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float npu_f16_to_f32(uint16_t h) { return npu_f16_table[h]; }

static float round16(float x) { return npu_f16_table[npu_f32_to_f16(x)]; }

/* ---- the core ----------------------------------------------------------------------------- */

static npu_stats npu_scratch_stats;

int npu_core_init(npu_core* core, const npu_config* cfg) {
  if (!npu_f16_table_ready) {
    for (uint32_t i = 0; i < 65536u; ++i) npu_f16_table[i] = f16_decode((uint16_t)i);
    npu_f16_table_ready = 1;
  }
  memset(core, 0, sizeof(*core));
  core->cfg = *cfg;
  for (int b = 0; b < NPU_NUM_BUFFERS; ++b) {
    core->buf[b] = (uint8_t*)calloc((size_t)cfg->size[b], 1);
    if (!core->buf[b]) return -1;
  }
  core->stats = &npu_scratch_stats;
  return 0;
}

void npu_core_free(npu_core* core) {
  for (int b = 0; b < NPU_NUM_BUFFERS; ++b) free(core->buf[b]);
  memset(core, 0, sizeof(*core));
}

void npu_core_bind(npu_core* core, npu_stats* stats) { core->stats = stats; }

void npu_op_begin(npu_core* core) {
  core->op_cube = core->op_vector = core->op_mte1 = core->op_dma = 0;
}

void npu_op_end(npu_core* core) {
  npu_stats* s = core->stats;
  s->cube += core->op_cube;
  s->vector += core->op_vector;
  s->mte1 += core->op_mte1;
  s->dma += core->op_dma;
  uint64_t t = NPU_MAX(NPU_MAX(core->op_cube, core->op_vector), NPU_MAX(core->op_mte1, core->op_dma));
  s->total += t;
}

/* A region [offset, offset + bytes) of buffer b, checked against its size. */
static void* npu_region(npu_core* core, int b, int64_t offset, int64_t bytes, int* err) {
  if (*err) return NULL;
  if (offset + bytes > core->cfg.size[b]) {
    snprintf(core->error, sizeof(core->error),
             "tile of %lld bytes at offset %lld overflows %s (%lld bytes)",
             (long long)bytes, (long long)offset, npu_buffer_name[b],
             (long long)core->cfg.size[b]);
    *err = 1;
    return NULL;
  }
  if (offset + bytes > core->stats->peak[b]) core->stats->peak[b] = offset + bytes;
  return core->buf[b] + offset;
}

static void charge_dma(npu_core* core, int64_t bytes, int inbound) {
  core->op_dma += (uint64_t)(core->cfg.dma_latency + NPU_CEIL(bytes, core->cfg.dma_bytes_per_cycle));
  if (inbound) core->stats->dma_in += (uint64_t)bytes;
  else core->stats->dma_out += (uint64_t)bytes;
}

static void charge_vector(npu_core* core, int64_t elements, int cost) {
  core->op_vector += (uint64_t)(core->cfg.issue_cycles + NPU_CEIL(elements, core->cfg.vector_lanes) * cost);
}

static void charge_mte1(npu_core* core, int64_t bytes) {
  core->op_mte1 += (uint64_t)NPU_CEIL(bytes, core->cfg.mte1_bytes_per_cycle);
}

/* DMA of `count` fp16 values DDR -> buffer. */
static void dma_in16(npu_core* core, uint16_t* dst, const uint16_t* src, int64_t count) {
  memcpy(dst, src, (size_t)count * 2);
  charge_dma(core, count * 2, 1);
}

static void dma_out16(npu_core* core, uint16_t* dst, const uint16_t* src, int64_t count) {
  memcpy(dst, src, (size_t)count * 2);
  charge_dma(core, count * 2, 0);
}

int npu_fail(npu_core* core, const char* what) {
  if (!core->error[0]) snprintf(core->error, sizeof(core->error), "%s", what);
  return -1;
}

/* ---- boundary conversion ------------------------------------------------------------------ */

int npu_to_5hd(npu_core* core, const float* src, const int64_t shape[4], const int64_t strides[4],
               uint16_t* dst) {
  int64_t n = shape[0], c = shape[1], p = shape[2] * shape[3], c1 = NPU_CEIL(c, 16);
  npu_op_begin(core);
  memset(dst, 0, (size_t)(n * c1 * p * 16 * 2));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < shape[2]; ++y)
        for (int64_t x = 0; x < shape[3]; ++x) {
          float v = src[i * strides[0] + ch * strides[1] + y * strides[2] + x * strides[3]];
          dst[((i * c1 + ch / 16) * p + y * shape[3] + x) * 16 + ch % 16] = npu_f32_to_f16(v);
        }
  charge_dma(core, n * c * p * 4, 1);
  charge_vector(core, n * c1 * p * 16, 2); /* cast + transpose */
  charge_dma(core, n * c1 * p * 16 * 2, 0);
  npu_op_end(core);
  return 0;
}

int npu_from_5hd(npu_core* core, const uint16_t* src, const int64_t shape[4],
                 const int64_t strides[4], float* dst) {
  int64_t n = shape[0], c = shape[1], p = shape[2] * shape[3], c1 = NPU_CEIL(c, 16);
  npu_op_begin(core);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < shape[2]; ++y)
        for (int64_t x = 0; x < shape[3]; ++x)
          dst[i * strides[0] + ch * strides[1] + y * strides[2] + x * strides[3]] =
              npu_f16_table[src[((i * c1 + ch / 16) * p + y * shape[3] + x) * 16 + ch % 16]];
  charge_dma(core, n * c1 * p * 16 * 2, 1);
  charge_vector(core, n * c1 * p * 16, 2);
  charge_dma(core, n * c * p * 4, 0);
  npu_op_end(core);
  return 0;
}

/* ---- vector programs on UB tiles ---------------------------------------------------------- */

typedef struct {
  int n, c1_total, p_total; /* the tensor */
  int c1_0, n_cnt;          /* channel blocks of this tile */
  int m0, m_cnt, m_pad;     /* pixels of this tile (m_pad >= m_cnt) */
} npu_tile;

static int64_t tile_elems(const npu_tile* t) { return (int64_t)t->n_cnt * t->m_pad * 16; }

static float vop_apply(int code, float a, float b) {
  switch (code) {
    case NPU_V_ADD: return a + b;
    case NPU_V_SUB: return a - b;
    case NPU_V_MUL: return a * b;
    case NPU_V_DIV: return a / b;
    case NPU_V_MAX: return a > b ? a : b;
    case NPU_V_MIN: return a < b ? a : b;
    case NPU_V_RELU: return a > 0.0f ? a : 0.0f;
    case NPU_V_SIGMOID: return 1.0f / (1.0f + expf(-a));
    case NPU_V_TANH: return tanhf(a);
    case NPU_V_EXP: return expf(a);
    default: return a;
  }
}

static int vop_cost(int code) {
  if (code == NPU_V_SIGMOID || code == NPU_V_TANH || code == NPU_V_EXP) return 4;
  return code == NPU_V_DIV ? 2 : 1;
}

/* Run `prog` on the tile whose slot 0 is filled; slots start at `slots` in UB. */
static int run_program(npu_core* core, const npu_program* prog, const npu_tile* t,
                       uint16_t* slots) {
  int64_t ne = tile_elems(t);
  for (int i = 0; i < prog->num_ops; ++i) {
    const npu_vop* op = &prog->ops[i];
    uint16_t* dst = slots + op->dst * ne;
    if (op->code == NPU_V_LOAD) {
      const uint16_t* src = prog->operands[op->b];
      for (int c = 0; c < t->n_cnt; ++c) {
        const uint16_t* row = src + (((int64_t)t->n * t->c1_total + t->c1_0 + c) * t->p_total + t->m0) * 16;
        dma_in16(core, dst + (int64_t)c * t->m_pad * 16, row, (int64_t)t->m_cnt * 16);
        memset(dst + ((int64_t)c * t->m_pad + t->m_cnt) * 16, 0, (size_t)(t->m_pad - t->m_cnt) * 32);
      }
      continue;
    }
    if (op->code == NPU_V_LOAD_BCAST) {
      const uint16_t* src = prog->operands[op->b];
      for (int c = 0; c < t->n_cnt; ++c) {
        const uint16_t* v = src + ((int64_t)t->n * t->c1_total + t->c1_0 + c) * 16;
        charge_dma(core, 32, 1);
        for (int m = 0; m < t->m_pad; ++m) memcpy(dst + ((int64_t)c * t->m_pad + m) * 16, v, 32);
      }
      charge_vector(core, ne, 1);
      continue;
    }
    const uint16_t* a = slots + op->a * ne;
    const uint16_t* bs = op->kind == NPU_B_SLOT ? slots + op->b * ne : NULL;
    const uint16_t* chan = op->kind == NPU_B_CHAN ? prog->chan[op->b] : NULL;
    float imm = op->imm;
    for (int c = 0; c < t->n_cnt; ++c)
      for (int m = 0; m < t->m_pad; ++m)
        for (int k = 0; k < 16; ++k) {
          int64_t e = ((int64_t)c * t->m_pad + m) * 16 + k;
          float x = npu_f16_table[a[e]];
          float y = imm;
          if (bs) y = npu_f16_table[bs[e]];
          else if (chan) y = npu_f16_table[chan[(t->c1_0 + c) * 16 + k]];
          dst[e] = npu_f32_to_f16(op->swap ? vop_apply(op->code, y, x) : vop_apply(op->code, x, y));
        }
    charge_vector(core, ne, vop_cost(op->code));
  }
  return 0;
}

/* Slot -> DDR; lanes past the true channel count are written as zeros, so padding never
 * carries a value (0 * inf in a later conv would be NaN). */
static void store_tile(npu_core* core, const npu_tile* t, uint16_t* slot, int channels,
                       uint16_t* out) {
  for (int c = 0; c < t->n_cnt; ++c) {
    const int valid = channels - (t->c1_0 + c) * 16;
    if (valid < 16)
      for (int m = 0; m < t->m_cnt; ++m)
        memset(slot + ((int64_t)c * t->m_pad + m) * 16 + NPU_MAX(valid, 0), 0,
               (size_t)(16 - NPU_MAX(valid, 0)) * 2);
    uint16_t* row = out + (((int64_t)t->n * t->c1_total + t->c1_0 + c) * t->p_total + t->m0) * 16;
    dma_out16(core, row, slot + (int64_t)c * t->m_pad * 16, (int64_t)t->m_cnt * 16);
  }
}

static int64_t slots_bytes(const npu_program* prog, int64_t ne) {
  return (int64_t)NPU_MAX(prog->num_slots, 1) * ne * 2;
}

/* ---- conv2d on the cube unit -------------------------------------------------------------- */

static void mmad(npu_core* core, const uint16_t* a, const uint16_t* b, float* c, int m1, int k1,
                 int n1, int m_pad, int accumulate) {
  for (int mi = 0; mi < m1; ++mi)
    for (int ni = 0; ni < n1; ++ni) {
      float acc[16][16];
      float* dst = c + ((int64_t)ni * m_pad + mi * 16) * 16;
      if (accumulate) memcpy(acc, dst, sizeof(acc));
      else memset(acc, 0, sizeof(acc));
      for (int ki = 0; ki < k1; ++ki) {
        const uint16_t* at = a + ((int64_t)mi * k1 + ki) * 256;
        const uint16_t* bt = b + ((int64_t)ki * n1 + ni) * 256;
        float bf[16][16];
        for (int i = 0; i < 256; ++i) bf[i / 16][i % 16] = npu_f16_table[bt[i]];
        for (int m = 0; m < 16; ++m)
          for (int k = 0; k < 16; ++k) {
            float av = npu_f16_table[at[m * 16 + k]];
            for (int n = 0; n < 16; ++n) acc[m][n] += av * bf[k][n];
          }
      }
      memcpy(dst, acc, sizeof(acc));
    }
  core->op_cube += (uint64_t)(core->cfg.issue_cycles + (int64_t)m1 * k1 * n1);
}

int npu_conv2d(npu_core* core, const npu_conv_desc* d, const uint16_t* in, const uint16_t* weight,
               const float* bias, const npu_program* prog, uint16_t* out) {
  int err = 0;
  const int64_t p_in = (int64_t)d->h * d->w, m_total = (int64_t)d->oh * d->ow;
  const int taps = d->kh * d->kw;
  const int m_pad_max = NPU_CEIL(d->m_tile, 16) * 16;
  const int max_rows = NPU_MIN(d->h, ((d->m_tile + d->ow - 1) / d->ow + 1) * d->sh + (d->kh - 1) * d->dh);
  const int64_t slab_bytes = (int64_t)d->c1_tile * max_rows * d->w * 32;
  uint16_t* slab = (uint16_t*)npu_region(core, NPU_L1, 0, slab_bytes, &err);
  uint16_t* wl1 = (uint16_t*)npu_region(core, NPU_L1, slab_bytes,
                                        (int64_t)d->k_tile * d->n_tile * 512, &err);
  uint16_t* l0a = (uint16_t*)npu_region(core, NPU_L0A, 0, (int64_t)m_pad_max / 16 * d->k_tile * 512, &err);
  uint16_t* l0b = (uint16_t*)npu_region(core, NPU_L0B, 0, (int64_t)d->k_tile * d->n_tile * 512, &err);
  float* l0c = (float*)npu_region(core, NPU_L0C, 0, (int64_t)d->n_tile * m_pad_max * 64, &err);
  const int64_t ne_max = (int64_t)d->n_tile * m_pad_max * 16;
  uint16_t* slots = (uint16_t*)npu_region(core, NPU_UB, 0, slots_bytes(prog, ne_max), &err);
  float* ub_bias = (float*)npu_region(core, NPU_UB, slots_bytes(prog, ne_max), (int64_t)d->n_tile * 64, &err);
  if (err) return -1;
  npu_op_begin(core);
  const int c_chunks = NPU_CEIL(d->c1_in, d->c1_tile);
  for (int n = 0; n < d->n; ++n)
    for (int64_t m0 = 0; m0 < m_total; m0 += d->m_tile) {
      const int m_cnt = (int)NPU_MIN((int64_t)d->m_tile, m_total - m0);
      const int m_pad = NPU_CEIL(m_cnt, 16) * 16, m1 = m_pad / 16;
      const int oh_a = (int)(m0 / d->ow), oh_b = (int)((m0 + m_cnt - 1) / d->ow);
      const int r_lo = NPU_MAX(0, oh_a * d->sh - d->ph);
      const int r_hi = NPU_MIN(d->h - 1, oh_b * d->sh - d->ph + (d->kh - 1) * d->dh);
      const int rows = NPU_MAX(0, r_hi - r_lo + 1);
      if (rows > max_rows) return npu_fail(core, "conv2d: input rows exceed the L1 slab");
      for (int nb0 = 0; nb0 < d->c1_out; nb0 += d->n_tile) {
        const int n_cnt = NPU_MIN(d->n_tile, d->c1_out - nb0);
        for (int cb0 = 0; cb0 < d->c1_in; cb0 += d->c1_tile) {
          const int c_cnt = NPU_MIN(d->c1_tile, d->c1_in - cb0);
          if (c_chunks > 1 || nb0 == 0) /* one chunk: the slab stays in L1 across nb0 */
            for (int c = 0; c < c_cnt; ++c)
              dma_in16(core, slab + (int64_t)c * rows * d->w * 16,
                       in + (((int64_t)n * d->c1_in + cb0 + c) * p_in + (int64_t)r_lo * d->w) * 16,
                       (int64_t)rows * d->w * 16);
          const int kc = c_cnt * taps;
          for (int kk = 0; kk < kc; kk += d->k_tile) {
            const int kt = NPU_MIN(d->k_tile, kc - kk);
            /* weights of k blocks kk..kk+kt: DDR (FRACTAL_Z) -> L1, one transfer when this
             * tile spans every output block (the rows are then contiguous) */
            const uint16_t* wsrc = weight + (((int64_t)cb0 * taps + kk) * d->c1_out + nb0) * 256;
            if (n_cnt == d->c1_out) {
              dma_in16(core, wl1, wsrc, (int64_t)kt * n_cnt * 256);
            } else {
              for (int k = 0; k < kt; ++k)
                dma_in16(core, wl1 + (int64_t)k * n_cnt * 256, wsrc + (int64_t)k * d->c1_out * 256,
                         (int64_t)n_cnt * 256);
            }
            /* img2col: L1 slab -> L0A [m1][kt][16][16] */
            for (int mi = 0; mi < m_pad; ++mi) {
              const int64_t pix = m0 + mi;
              const int oy = (int)(pix / d->ow), ox = (int)(pix % d->ow);
              for (int ki = 0; ki < kt; ++ki) {
                const int k = kk + ki, c = k / taps, ky = (k / d->kw) % d->kh, kx = k % d->kw;
                const int iy = oy * d->sh - d->ph + ky * d->dh, ix = ox * d->sw - d->pw + kx * d->dw;
                uint16_t* dst = l0a + (((int64_t)(mi / 16) * kt + ki) * 16 + mi % 16) * 16;
                if (mi >= m_cnt || iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                  memset(dst, 0, 32);
                else
                  memcpy(dst, slab + (((int64_t)c * rows + iy - r_lo) * d->w + ix) * 16, 32);
              }
            }
            charge_mte1(core, (int64_t)m_pad * kt * 32);
            memcpy(l0b, wl1, (size_t)kt * n_cnt * 512);
            charge_mte1(core, (int64_t)kt * n_cnt * 512);
            mmad(core, l0a, l0b, l0c, m1, kt, n_cnt, m_pad, !(cb0 == 0 && kk == 0));
          }
        }
        /* fixpipe: L0C (+ bias) -> slot 0 as fp16 */
        npu_tile t = {n, d->c1_out, (int)m_total, nb0, n_cnt, (int)m0, m_cnt, m_pad};
        const int64_t ne = tile_elems(&t);
        if (bias) {
          memcpy(ub_bias, bias + (int64_t)nb0 * 16, (size_t)n_cnt * 64);
          charge_dma(core, (int64_t)n_cnt * 64, 1);
        }
        for (int c = 0; c < n_cnt; ++c)
          for (int m = 0; m < m_pad; ++m)
            for (int k = 0; k < 16; ++k) {
              int64_t e = ((int64_t)c * m_pad + m) * 16 + k;
              slots[e] = npu_f32_to_f16(l0c[e] + (bias ? ub_bias[c * 16 + k] : 0.0f));
            }
        charge_vector(core, ne, 1);
        if (run_program(core, prog, &t, slots)) return -1;
        store_tile(core, &t, slots + (int64_t)prog->result * ne, prog->channels, out);
      }
    }
  core->stats->macs += (uint64_t)d->macs;
  npu_op_end(core);
  return 0;
}

/* ---- windows on the vector unit: depthwise conv, max / average pooling --------------------- */

int npu_window(npu_core* core, const npu_window_desc* d, const uint16_t* in, const uint16_t* weight,
               const float* bias, const npu_program* prog, uint16_t* out) {
  int err = 0;
  const int64_t p_in = (int64_t)d->h * d->w, p_out = (int64_t)d->oh * d->ow;
  const int taps = d->kh * d->kw;
  const int in_rows_max = NPU_MIN(d->h, d->in_rows_tile);
  const int64_t ne_max = (int64_t)d->c1_tile * d->rows_tile * d->ow * 16;
  int64_t off = 0;
  uint16_t* slots = (uint16_t*)npu_region(core, NPU_UB, off, slots_bytes(prog, ne_max), &err);
  off += slots_bytes(prog, ne_max);
  float* acc = (float*)npu_region(core, NPU_UB, off, ne_max * 4, &err);
  off += ne_max * 4;
  uint16_t* slab = (uint16_t*)npu_region(core, NPU_UB, off, (int64_t)d->c1_tile * in_rows_max * d->w * 32, &err);
  off += (int64_t)d->c1_tile * in_rows_max * d->w * 32;
  uint16_t* wub = weight ? (uint16_t*)npu_region(core, NPU_UB, off, (int64_t)d->c1_tile * taps * 32, &err) : NULL;
  off += weight ? (int64_t)d->c1_tile * taps * 32 : 0;
  float* ub_bias = bias ? (float*)npu_region(core, NPU_UB, off, (int64_t)d->c1_tile * 64, &err) : NULL;
  int* count = NULL;
  if (err) return -1;
  if (d->kind == NPU_WIN_AVG_NOPAD) count = (int*)calloc((size_t)d->rows_tile * d->ow, sizeof(int));
  npu_op_begin(core);
  for (int n = 0; n < d->n; ++n)
    for (int cb0 = 0; cb0 < d->c1; cb0 += d->c1_tile) {
      const int c_cnt = NPU_MIN(d->c1_tile, d->c1 - cb0);
      if (weight) {
        dma_in16(core, wub, weight + (int64_t)cb0 * taps * 16, (int64_t)c_cnt * taps * 16);
      }
      if (bias) {
        memcpy(ub_bias, bias + (int64_t)cb0 * 16, (size_t)c_cnt * 64);
        charge_dma(core, (int64_t)c_cnt * 64, 1);
      }
      for (int r0 = 0; r0 < d->oh; r0 += d->rows_tile) {
        const int r_cnt = NPU_MIN(d->rows_tile, d->oh - r0);
        const int m_cnt = r_cnt * d->ow;
        npu_tile t = {n, d->c1, (int)p_out, cb0, c_cnt, r0 * d->ow, m_cnt, m_cnt};
        const int64_t ne = tile_elems(&t);
        const float init = d->kind == NPU_WIN_MAX ? -INFINITY : 0.0f;
        for (int64_t e = 0; e < ne; ++e) acc[e] = init;
        if (count) memset(count, 0, (size_t)m_cnt * sizeof(int));
        /* input rows in chunks of in_rows_max; each tap reads the chunk that holds its row */
        const int need_lo = NPU_MAX(0, r0 * d->sh - d->ph);
        const int need_hi = NPU_MIN(d->h - 1, (r0 + r_cnt - 1) * d->sh - d->ph + (d->kh - 1) * d->dh);
        for (int lo = need_lo; lo <= need_hi; lo += in_rows_max) {
          const int rows = NPU_MIN(in_rows_max, need_hi - lo + 1);
          for (int c = 0; c < c_cnt; ++c)
            dma_in16(core, slab + (int64_t)c * rows * d->w * 16,
                     in + (((int64_t)n * d->c1 + cb0 + c) * p_in + (int64_t)lo * d->w) * 16,
                     (int64_t)rows * d->w * 16);
          int64_t taps_done = 0;
          for (int c = 0; c < c_cnt; ++c)
            for (int oy = 0; oy < r_cnt; ++oy)
              for (int ox = 0; ox < d->ow; ++ox)
                for (int ky = 0; ky < d->kh; ++ky) {
                  const int iy = (r0 + oy) * d->sh - d->ph + ky * d->dh;
                  if (iy < lo || iy >= lo + rows) continue;
                  for (int kx = 0; kx < d->kw; ++kx) {
                    const int ix = ox * d->sw - d->pw + kx * d->dw;
                    if (ix < 0 || ix >= d->w) continue;
                    const uint16_t* x = slab + (((int64_t)c * rows + iy - lo) * d->w + ix) * 16;
                    float* a = acc + ((int64_t)c * m_cnt + oy * d->ow + ox) * 16;
                    if (c == 0 && count) count[oy * d->ow + ox]++;
                    taps_done++;
                    if (d->kind == NPU_WIN_DEPTHWISE) {
                      const uint16_t* wv = wub + ((int64_t)c * taps + ky * d->kw + kx) * 16;
                      for (int k = 0; k < 16; ++k) a[k] += npu_f16_table[x[k]] * npu_f16_table[wv[k]];
                    } else if (d->kind == NPU_WIN_MAX) {
                      for (int k = 0; k < 16; ++k) a[k] = NPU_MAX(a[k], npu_f16_table[x[k]]);
                    } else {
                      for (int k = 0; k < 16; ++k) a[k] += npu_f16_table[x[k]];
                    }
                  }
                }
          charge_vector(core, taps_done * 16, 1);
        }
        for (int c = 0; c < c_cnt; ++c)
          for (int m = 0; m < m_cnt; ++m)
            for (int k = 0; k < 16; ++k) {
              const int64_t e = ((int64_t)c * m_cnt + m) * 16 + k;
              float v = acc[e];
              if (d->kind == NPU_WIN_AVG) v /= (float)taps;
              if (d->kind == NPU_WIN_AVG_NOPAD) v /= (float)NPU_MAX(count[m], 1);
              if (d->kind == NPU_WIN_MAX && v == -INFINITY) v = 0.0f;
              if (ub_bias) v += ub_bias[c * 16 + k];
              slots[e] = npu_f32_to_f16(v);
            }
        charge_vector(core, ne, 1);
        if (run_program(core, prog, &t, slots)) { free(count); return -1; }
        store_tile(core, &t, slots + (int64_t)prog->result * ne, prog->channels, out);
      }
    }
  free(count);
  npu_op_end(core);
  return 0;
}

/* ---- elementwise programs and softmax ----------------------------------------------------- */

int npu_eltwise(npu_core* core, const npu_eltwise_desc* d, const npu_program* prog, uint16_t* out) {
  int err = 0;
  const int64_t ne_max = (int64_t)d->n_tile * d->m_tile * 16;
  uint16_t* slots = (uint16_t*)npu_region(core, NPU_UB, 0, slots_bytes(prog, ne_max), &err);
  if (err) return -1;
  npu_op_begin(core);
  for (int n = 0; n < d->shape.n; ++n)
    for (int cb0 = 0; cb0 < d->shape.c1; cb0 += d->n_tile)
      for (int m0 = 0; m0 < d->shape.p; m0 += d->m_tile) {
        const int m_cnt = NPU_MIN(d->m_tile, d->shape.p - m0);
        npu_tile t = {n, d->shape.c1, d->shape.p, cb0, NPU_MIN(d->n_tile, d->shape.c1 - cb0),
                      m0, m_cnt, m_cnt};
        if (run_program(core, prog, &t, slots)) return -1;
        store_tile(core, &t, slots + (int64_t)prog->result * tile_elems(&t), prog->channels, out);
      }
  npu_op_end(core);
  return 0;
}

int npu_softmax(npu_core* core, const npu_softmax_desc* d, const uint16_t* in,
                const npu_program* prog, uint16_t* out) {
  int err = 0;
  const int c1 = d->shape.c1;
  const int64_t ne_max = (int64_t)c1 * d->m_tile * 16;
  uint16_t* slots = (uint16_t*)npu_region(core, NPU_UB, 0, slots_bytes(prog, ne_max), &err);
  uint16_t* x = (uint16_t*)npu_region(core, NPU_UB, slots_bytes(prog, ne_max), ne_max * 2, &err);
  if (err) return -1;
  npu_op_begin(core);
  for (int n = 0; n < d->shape.n; ++n)
    for (int m0 = 0; m0 < d->shape.p; m0 += d->m_tile) {
      const int m_cnt = NPU_MIN(d->m_tile, d->shape.p - m0);
      npu_tile t = {n, c1, d->shape.p, 0, c1, m0, m_cnt, m_cnt};
      const int64_t ne = tile_elems(&t);
      for (int c = 0; c < c1; ++c)
        dma_in16(core, x + (int64_t)c * m_cnt * 16,
                 in + (((int64_t)n * c1 + c) * d->shape.p + m0) * 16, (int64_t)m_cnt * 16);
      for (int m = 0; m < m_cnt; ++m) {
        float mx = -INFINITY, sum = 0.0f;
        for (int ch = 0; ch < d->channels; ++ch)
          mx = NPU_MAX(mx, npu_f16_table[x[((int64_t)(ch / 16) * m_cnt + m) * 16 + ch % 16]]);
        for (int ch = 0; ch < d->channels; ++ch) {
          const int64_t e = ((int64_t)(ch / 16) * m_cnt + m) * 16 + ch % 16;
          float ex = round16(expf(round16(npu_f16_table[x[e]] - mx)));
          slots[e] = npu_f32_to_f16(ex);
          sum += ex;
        }
        for (int ch = 0; ch < c1 * 16; ++ch) {
          const int64_t e = ((int64_t)(ch / 16) * m_cnt + m) * 16 + ch % 16;
          slots[e] = ch < d->channels ? npu_f32_to_f16(npu_f16_table[slots[e]] / sum) : 0;
        }
      }
      charge_vector(core, ne, 1 + 4 + 1 + 2); /* max, exp, sum, divide */
      if (run_program(core, prog, &t, slots)) return -1;
      store_tile(core, &t, slots + (int64_t)prog->result * ne, prog->channels, out);
    }
  npu_op_end(core);
  return 0;
}
