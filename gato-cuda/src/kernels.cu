// gato-rs CUDA kernels, compiled with NVRTC at first use (one module per context). f32 compute throughout;
// f16/bf16 appear only as storage (cast kernels). No headers: half conversions use PTX cvt instructions.

#define PAD_ID 0xFFFFFFFFu
// Dynamic shared memory of a launch (tests/emulated/cuda_host.h gives it a host definition).
#ifndef GATO_DYNAMIC_SMEM
#define GATO_DYNAMIC_SMEM(T, name) extern __shared__ T name[]
#endif
#define NEG_INF (-__int_as_float(0x7f800000))

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

extern "C" __global__ void unary_f32(const float* __restrict__ x, float* __restrict__ y, long long n, int op) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        float r;
        switch (op) {
            case 0: r = gelu_erf(v); break;
            case 1: r = v > 0.0f ? v : 0.0f; break;
            case 2: r = expf(v); break;
            case 3: r = tanhf(v); break;
            default: r = -v; break;
        }
        y[i] = r;
    }
}

extern "C" __global__ void binary_f32(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                                      long long n, long long inner, int op) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float u = a[i], v = b[i % inner];
        float r;
        switch (op) {
            case 0: r = u + v; break;
            case 1: r = u - v; break;
            case 2: r = u * v; break;
            case 3: r = u / v; break;
            default: r = fmaxf(u, v); break;
        }
        y[i] = r;
    }
}

extern "C" __global__ void affine_f32(const float* __restrict__ x, float* __restrict__ y, long long n, float mul, float add) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = x[i] * mul + add;
}

extern "C" __global__ void geglu_f32(const float* __restrict__ x, float* __restrict__ y, long long rows, long long f) {
    long long n = rows * f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long r = i / f, j = i % f;
        y[i] = gelu_erf(x[r * 2 * f + j]) * x[r * 2 * f + f + j];
    }
}

// Block-wide sum of one value per thread (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v) {
    __shared__ float warp_sums[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    int warps = blockDim.x >> 5;
    float t = lane < warps ? warp_sums[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    return t;
}

__device__ float block_max(float v) {
    __shared__ float warp_max[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) warp_max[warp] = v;
    __syncthreads();
    int warps = blockDim.x >> 5;
    float t = lane < warps ? warp_max[lane] : NEG_INF;
    for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
    return t;
}

// One block per row; two passes (mean, then variance) for accuracy. Also writes each row's mean and
// rstd = 1/sqrt(var + eps), which the backward reads (inference passes scratch buffers).
extern "C" __global__ void layer_norm_f32(const float* __restrict__ x, const float* __restrict__ g, const float* __restrict__ b,
                                          float* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                          long long rows, int d, float eps) {
    long long r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + r * d;
    float s = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
    float mean = block_sum(s) / d;
    float q = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) { float t = xr[j] - mean; q += t * t; }
    float inv = rsqrtf(block_sum(q) / d + eps);
    for (int j = threadIdx.x; j < d; j += blockDim.x) y[r * d + j] = (xr[j] - mean) * inv * g[j] + b[j];
    if (threadIdx.x == 0) { mean_out[r] = mean; rstd_out[r] = inv; }
}

// One block per (image, group); the group's channels are contiguous in NCHW. Writes the group's mean and rstd
// (indexed image * groups + group) for the backward.
extern "C" __global__ void group_norm_f32(const float* __restrict__ x, const float* __restrict__ g, const float* __restrict__ b,
                                          float* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                          int groups, int cg, long long hw, float eps) {
    long long blk = blockIdx.x;
    int grp = (int)(blk % groups);
    long long len = (long long)cg * hw;
    const float* xg = x + blk * len;
    float s = 0.0f;
    for (long long j = threadIdx.x; j < len; j += blockDim.x) s += xg[j];
    float mean = block_sum(s) / (float)len;
    float q = 0.0f;
    for (long long j = threadIdx.x; j < len; j += blockDim.x) { float t = xg[j] - mean; q += t * t; }
    float inv = rsqrtf(block_sum(q) / (float)len + eps);
    for (long long j = threadIdx.x; j < len; j += blockDim.x) {
        int c = grp * cg + (int)(j / hw);
        y[blk * len + j] = (xg[j] - mean) * inv * g[c] + b[c];
    }
    if (threadIdx.x == 0) { mean_out[blk] = mean; rstd_out[blk] = inv; }
}

// One block per row; `log` selects log-softmax.
extern "C" __global__ void softmax_f32(const float* __restrict__ x, float* __restrict__ y, long long rows, int d, int log_out) {
    long long r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + r * d;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < d; j += blockDim.x) m = fmaxf(m, xr[j]);
    m = block_max(m);
    float s = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) s += expf(xr[j] - m);
    s = block_sum(s);
    float lse = m + logf(s);
    for (int j = threadIdx.x; j < d; j += blockDim.x) y[r * d + j] = log_out ? xr[j] - lse : expf(xr[j] - lse);
}

// Fused causal attention, one warp per query row, online softmax over the visible keys (flash-attention style:
// never materialises the Tq × Tk matrix). q [B,H,Tq,D], k [B,H,Tk,D], v [B,H,Tk,Dv] -> o [B,H,Tq,Dv], and each
// row's log-sum-exp of its scaled scores (-inf for a row that sees no key) into lse [B,H,Tq] for the backward.
// Each lane owns output dims lane, lane+32, ... (Dv <= 32 * ATT_MAX_PER_LANE).
#define ATT_MAX_PER_LANE 8
extern "C" __global__ void attention_f32(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                         float* __restrict__ o, int H, int Tq, int Tk, int D, int Dv, float scale,
                                         int causal, int q_offset, const int* __restrict__ kv_len, long long rows,
                                         float* __restrict__ lse) {
    long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    int i = (int)(row % Tq);
    long long bh = row / Tq;
    int b = (int)(bh / H);
    int limit = Tk;
    if (kv_len) limit = min(limit, kv_len[b]);
    if (causal) limit = min(limit, q_offset + i + 1);
    const float* qr = q + row * D;
    const float* kb = k + bh * (long long)Tk * D;
    const float* vb = v + bh * (long long)Tk * Dv;
    float acc[ATT_MAX_PER_LANE];
    for (int t = 0; t < ATT_MAX_PER_LANE; t++) acc[t] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    for (int j = 0; j < limit; j++) {
        float s = 0.0f;
        for (int x = lane; x < D; x += 32) s += qr[x] * kb[(long long)j * D + x];
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        s *= scale;
        float m_new = fmaxf(m, s);
        float corr = expf(m - m_new);
        float p = expf(s - m_new);
        l = l * corr + p;
        for (int t = 0; t < ATT_MAX_PER_LANE; t++) {
            int x = lane + 32 * t;
            if (x < Dv) acc[t] = acc[t] * corr + p * vb[(long long)j * Dv + x];
        }
        m = m_new;
    }
    float inv = limit > 0 ? 1.0f / l : 0.0f;
    for (int t = 0; t < ATT_MAX_PER_LANE; t++) {
        int x = lane + 32 * t;
        if (x < Dv) o[row * Dv + x] = acc[t] * inv;
    }
    if (lane == 0) lse[row] = limit > 0 ? m + logf(l) : NEG_INF;
}

// Rows of table [V, d] at ids; PAD_ID gathers zeros. An id >= V gathers zeros too and records its position: `bad`
// keeps n - (first bad position) through atomicMax (0 = all ids valid), read by the host at its next sync point.
extern "C" __global__ void embedding_f32(const float* __restrict__ table, const unsigned int* __restrict__ ids, float* __restrict__ y,
                                         long long n, int d, unsigned int v, unsigned long long* __restrict__ bad) {
    long long total = n * d;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long row = i / d;
        unsigned int id = ids[row];
        if (id == PAD_ID) {
            y[i] = 0.0f;
        } else if (id >= v) {
            y[i] = 0.0f;
            if (i % d == 0) atomicMax(bad, (unsigned long long)(n - row));
        } else {
            y[i] = table[(long long)id * d + (i % d)];
        }
    }
}

// One image [C,H,W] -> columns [C*kh*kw, OH*OW], zero padding.
extern "C" __global__ void im2col_f32(const float* __restrict__ x, float* __restrict__ cols, int C, int H, int W, int kh, int kw,
                                      int oh, int ow, int stride, int pad) {
    long long p = (long long)oh * ow;
    long long total = (long long)C * kh * kw * p;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long row = i / p, col = i % p;
        int kx = (int)(row % kw), ky = (int)((row / kw) % kh), c = (int)(row / ((long long)kw * kh));
        int oy = (int)(col / ow), ox = (int)(col % ow);
        int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
        cols[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[((long long)c * H + iy) * W + ix] : 0.0f;
    }
}

// y[n, o, p] += bias[o] for y [N, O, P].
extern "C" __global__ void add_channel_bias_f32(float* __restrict__ y, const float* __restrict__ bias, long long total, int o, long long p) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        y[i] += bias[(i / p) % o];
}

// dst[r * dst_row + dst_off + j] = src[r * src_row + src_off + j], j < count: slice and concat along any axis.
#define BLOCK_COPY(T, NAME)                                                                                          \
    extern "C" __global__ void NAME(const T* __restrict__ src, T* __restrict__ dst, long long rows, long long src_row,   \
                                    long long src_off, long long dst_row, long long dst_off, long long count) {        \
        long long total = rows * count;                                                                              \
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) { \
            long long r = i / count, j = i % count;                                                                  \
            dst[r * dst_row + dst_off + j] = src[r * src_row + src_off + j];                                         \
        }                                                                                                            \
    }
BLOCK_COPY(float, block_copy_f32)
BLOCK_COPY(unsigned int, block_copy_b32)
BLOCK_COPY(unsigned short, block_copy_b16)

// Permute: meta = [rank, out_dims[rank], in_strides_for_out_axes[rank]].
#define PERMUTE(T, NAME)                                                                                             \
    extern "C" __global__ void NAME(const T* __restrict__ src, T* __restrict__ dst, long long n, const long long* __restrict__ meta) { \
        int rank = (int)meta[0];                                                                                     \
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) { \
            long long rem = i, off = 0;                                                                              \
            for (int a = rank - 1; a >= 0; a--) {                                                                    \
                long long d = meta[1 + a];                                                                           \
                off += (rem % d) * meta[1 + rank + a];                                                               \
                rem /= d;                                                                                            \
            }                                                                                                        \
            dst[i] = src[off];                                                                                       \
        }                                                                                                            \
    }
PERMUTE(float, permute_f32)
PERMUTE(unsigned int, permute_b32)
PERMUTE(unsigned short, permute_b16)

// Casts between f32 and the half types, round to nearest even; no headers needed.
extern "C" __global__ void f32_to_f16(const float* __restrict__ x, unsigned short* __restrict__ y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        unsigned short h;
#ifdef GATO_HOST_EMULATION
        _Float16 hf = (_Float16)x[i];
        std::memcpy(&h, &hf, 2);
#else
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x[i]));
#endif
        y[i] = h;
    }
}
extern "C" __global__ void f16_to_f32(const unsigned short* __restrict__ x, float* __restrict__ y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float f;
#ifdef GATO_HOST_EMULATION
        _Float16 hf;
        std::memcpy(&hf, &x[i], 2);
        f = (float)hf;
#else
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x[i]));
#endif
        y[i] = f;
    }
}
extern "C" __global__ void f32_to_bf16(const float* __restrict__ x, unsigned short* __restrict__ y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        unsigned int bits = __float_as_uint(x[i]);
        if ((bits & 0x7fffffffu) > 0x7f800000u) { y[i] = 0x7fc0; continue; }  // NaN
        bits += 0x7fffu + ((bits >> 16) & 1u);
        y[i] = (unsigned short)(bits >> 16);
    }
}
extern "C" __global__ void bf16_to_f32(const unsigned short* __restrict__ x, float* __restrict__ y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = __uint_as_float(((unsigned int)x[i]) << 16);
}
