// gato-rs CUDA training kernels (docs/design.md §8): the backward of every op of kernels.cu that training uses,
// the fused softmax cross-entropy, and the optimiser's reductions and fused AdamW step. Compiled with NVRTC in
// one module with kernels.cu (this text is appended to it), so the helpers there (block_sum, gelu_erf, NEG_INF,
// PAD_ID) are in scope. Every reduction runs in a fixed order (no float atomics), so a step is reproducible bit for
// bit.

// d/dx [x Phi(x)] = Phi(x) + x phi(x), exact GELU's derivative.
__device__ __forceinline__ float gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;
    return cdf + x * pdf;
}

// Block-wide sum of one double per thread (blockDim.x a multiple of 32, at most 1024).
__device__ double block_sum_d(double v) {
    __shared__ double warp_sums_d[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) warp_sums_d[warp] = v;
    __syncthreads();
    int warps = blockDim.x >> 5;
    double t = lane < warps ? warp_sums_d[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    return t;
}

// dx = dy * f'(x); op codes as unary_f32.
extern "C" __global__ void unary_backward_f32(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                                              long long n, int op) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = x[i], d;
        switch (op) {
            case 0: d = gelu_grad(v); break;
            case 1: d = v > 0.0f ? 1.0f : 0.0f; break;
            case 2: d = expf(v); break;
            case 3: { float t = tanhf(v); d = 1.0f - t * t; break; }
            default: d = -1.0f; break;
        }
        dx[i] = dy[i] * d;
    }
}

// GEGLU backward over rows of x [2f] and dy [f]: da = dy * b * gelu'(a), db = dy * gelu(a).
extern "C" __global__ void geglu_backward_f32(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                                              long long rows, long long f) {
    long long n = rows * f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long r = i / f, j = i % f;
        float a = x[r * 2 * f + j], b = x[r * 2 * f + f + j], g = dy[i];
        dx[r * 2 * f + j] = g * b * gelu_grad(a);
        dx[r * 2 * f + f + j] = g * gelu_erf(a);
    }
}

// Column sums of x [rows, d] into out [d], in f64: a block of 256 threads owns 32 columns, 8 threads per column
// stride over the rows, and the 8 partial sums are added in a fixed order. Grid: ceil(d / 32) blocks.
extern "C" __global__ void sum_rows_f32(const float* __restrict__ x, float* __restrict__ out, long long rows, int d) {
    __shared__ double part[8][33];
    int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    long long col = (long long)blockIdx.x * 32 + tx;
    double s = 0.0;
    if (col < d)
        for (long long r = ty; r < rows; r += 8) s += (double)x[r * d + col];
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && col < d) {
        double t = 0.0;
        for (int k = 0; k < 8; k++) t += part[k][tx];
        out[col] = (float)t;
    }
}

// Per-channel sums of x [n, c, p] into out [c], in f64: one block per channel.
extern "C" __global__ void channel_sum_f32(const float* __restrict__ x, float* __restrict__ out, long long n, int c, long long p) {
    int ch = blockIdx.x;
    if (ch >= c) return;
    long long total = n * p;
    double s = 0.0;
    for (long long i = threadIdx.x; i < total; i += blockDim.x) {
        long long img = i / p, q = i % p;
        s += (double)x[(img * c + ch) * p + q];
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) out[ch] = (float)s;
}

// LayerNorm backward, one block per row, from the saved mean and rstd: with xhat = (x - mean) * rstd and
// g = dy * gamma, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)). Also writes dy * xhat, whose column sums are
// dgamma (the column sums of dy are dbeta), so the parameter gradients need no atomics.
extern "C" __global__ void layer_norm_backward_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                                   const float* __restrict__ gamma, const float* __restrict__ mean,
                                                   const float* __restrict__ rstd, float* __restrict__ dx,
                                                   float* __restrict__ dy_xhat, long long rows, int d) {
    long long r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + r * d;
    const float* gr = dy + r * d;
    float mu = mean[r], rs = rstd[r];
    float s1 = 0.0f, s2 = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float g = gr[j] * gamma[j], xh = (xr[j] - mu) * rs;
        s1 += g;
        s2 += g * xh;
    }
    s1 = block_sum(s1) / d;
    s2 = block_sum(s2) / d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float g = gr[j] * gamma[j], xh = (xr[j] - mu) * rs;
        dx[r * d + j] = rs * (g - s1 - xh * s2);
        dy_xhat[r * d + j] = gr[j] * xh;
    }
}

// GroupNorm backward, one block per (image, group), the same formula over the group's cg * hw values (gamma per
// channel); writes dy * xhat for dgamma as layer_norm_backward_f32 does.
extern "C" __global__ void group_norm_backward_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                                   const float* __restrict__ gamma, const float* __restrict__ mean,
                                                   const float* __restrict__ rstd, float* __restrict__ dx,
                                                   float* __restrict__ dy_xhat, int groups, int cg, long long hw) {
    long long blk = blockIdx.x;
    int grp = (int)(blk % groups);
    long long len = (long long)cg * hw;
    const float* xg = x + blk * len;
    const float* gg = dy + blk * len;
    float mu = mean[blk], rs = rstd[blk];
    float s1 = 0.0f, s2 = 0.0f;
    for (long long j = threadIdx.x; j < len; j += blockDim.x) {
        float g = gg[j] * gamma[grp * cg + (int)(j / hw)], xh = (xg[j] - mu) * rs;
        s1 += g;
        s2 += g * xh;
    }
    s1 = block_sum(s1) / (float)len;
    s2 = block_sum(s2) / (float)len;
    for (long long j = threadIdx.x; j < len; j += blockDim.x) {
        float g = gg[j] * gamma[grp * cg + (int)(j / hw)], xh = (xg[j] - mu) * rs;
        dx[blk * len + j] = rs * (g - s1 - xh * s2);
        dy_xhat[blk * len + j] = gg[j] * xh;
    }
}

// Embedding backward, deterministic (no float atomics): the gradient rows of each id are added in position order,
// so a step's table gradient has the same bits on every run (and a resumed run equals an uninterrupted one).
// Step 1: each position's rank among the earlier positions with the same id, and each id's count (integer
// atomics, exact). One thread per position scanning the earlier ones: n^2/2 comparisons of 4-byte ids, small next
// to a step for the batches one GPU takes (8 x 1024 tokens: 34M). PAD_ID and ids >= v get rank -1; an id >= v is
// flagged as in embedding_f32.
extern "C" __global__ void embedding_rank_u32(const unsigned int* __restrict__ ids, int* __restrict__ rank, int* __restrict__ counts,
                                              long long n, unsigned int v, unsigned long long* __restrict__ bad) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        unsigned int id = ids[i];
        if (id == PAD_ID || id >= v) {
            rank[i] = -1;
            if (id != PAD_ID) atomicMax(bad, (unsigned long long)(n - i));
            continue;
        }
        int r = 0;
        for (long long j = 0; j < i; j++) r += ids[j] == id ? 1 : 0;
        rank[i] = r;
        atomicAdd(&counts[id], 1);
    }
}

// Step 2: offsets[0..=v] = exclusive prefix sums of counts[0..v], in one block: each thread sums a contiguous
// chunk, thread 0 scans the chunk totals, each thread writes its chunk's prefixes.
extern "C" __global__ void exclusive_scan_i32(const int* __restrict__ counts, int* __restrict__ offsets, int v) {
    __shared__ int chunk_sum[1024];
    int t = threadIdx.x, threads = blockDim.x;
    int per = (v + threads - 1) / threads;
    int lo = min(v, t * per), hi = min(v, lo + per);
    int s = 0;
    for (int i = lo; i < hi; i++) s += counts[i];
    chunk_sum[t] = s;
    __syncthreads();
    if (t == 0) {
        int run = 0;
        for (int k = 0; k < threads; k++) { int c = chunk_sum[k]; chunk_sum[k] = run; run += c; }
        offsets[v] = run;
    }
    __syncthreads();
    int run = chunk_sum[t];
    for (int i = lo; i < hi; i++) { offsets[i] = run; run += counts[i]; }
}

// Step 3: order[offsets[id] + rank] = position, so each id's positions are contiguous and increasing.
extern "C" __global__ void embedding_order_u32(const unsigned int* __restrict__ ids, const int* __restrict__ rank,
                                               const int* __restrict__ offsets, int* __restrict__ order, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        int r = rank[i];
        if (r >= 0) order[offsets[ids[i]] + r] = (int)i;
    }
}

// Step 4: out [v, d] row id = the sum of dy's rows at its positions, in position order. One block per id (a block
// whose id never occurs leaves its zeroed row).
extern "C" __global__ void embedding_gather_grad_f32(const float* __restrict__ dy, const int* __restrict__ offsets,
                                                     const int* __restrict__ order, float* __restrict__ out, int d) {
    int id = blockIdx.x;
    int lo = offsets[id], hi = offsets[id + 1];
    if (lo == hi) return;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float s = 0.0f;
        for (int k = lo; k < hi; k++) s += dy[(long long)order[k] * d + j];
        out[(long long)id * d + j] = s;
    }
}

// One image's column gradient dcols [C*kh*kw, OH*OW] back to dx [C, H, W]: each input pixel gathers the columns
// that read it (no atomics).
extern "C" __global__ void col2im_f32(const float* __restrict__ cols, float* __restrict__ dx, int C, int H, int W, int kh, int kw,
                                      int oh, int ow, int stride, int pad) {
    long long total = (long long)C * H * W;
    long long p = (long long)oh * ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int ix = (int)(i % W), iy = (int)((i / W) % H), c = (int)(i / ((long long)W * H));
        float s = 0.0f;
        for (int ky = 0; ky < kh; ky++) {
            int ty = iy + pad - ky;
            if (ty < 0 || ty % stride != 0) continue;
            int oy = ty / stride;
            if (oy >= oh) continue;
            for (int kx = 0; kx < kw; kx++) {
                int tx = ix + pad - kx;
                if (tx < 0 || tx % stride != 0) continue;
                int ox = tx / stride;
                if (ox >= ow) continue;
                s += cols[((long long)(c * kh + ky) * kw + kx) * p + (long long)oy * ow + ox];
            }
        }
        dx[i] = s;
    }
}

// Fused masked softmax cross-entropy, one block per row of logits [rows, v]: dlogits = scale * (softmax - onehot)
// and row_loss = lse - logit[target]; a PAD_ID target zeroes its row (no loss), a target >= v is flagged as in
// embedding_f32 and zeroes its row.
extern "C" __global__ void cross_entropy_f32(const float* __restrict__ logits, const unsigned int* __restrict__ targets,
                                             float* __restrict__ dlogits, float* __restrict__ row_loss, long long rows, int v,
                                             float scale, unsigned long long* __restrict__ bad) {
    long long r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = logits + r * v;
    float* dr = dlogits + r * v;
    unsigned int t = targets[r];
    if (t == PAD_ID || t >= (unsigned int)v) {
        for (int j = threadIdx.x; j < v; j += blockDim.x) dr[j] = 0.0f;
        if (threadIdx.x == 0) {
            row_loss[r] = 0.0f;
            if (t != PAD_ID) atomicMax(bad, (unsigned long long)(rows - r));
        }
        return;
    }
    float m = NEG_INF;
    for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, xr[j]);
    m = block_max(m);
    float s = 0.0f;
    for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf(xr[j] - m);
    s = block_sum(s);
    float inv = scale / s;
    for (int j = threadIdx.x; j < v; j += blockDim.x) dr[j] = expf(xr[j] - m) * inv - (j == (int)t ? scale : 0.0f);
    if (threadIdx.x == 0) row_loss[r] = (m + logf(s)) - xr[t];
}

// out[0] = scale * sum(x[0..n]) in f64 then rounded: one block.
extern "C" __global__ void scaled_sum_f32(const float* __restrict__ x, float* __restrict__ out, long long n, float scale) {
    double s = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) out[0] = (float)((double)scale * s);
}

// Attention backward, step 1: delta[row] = sum_x dout[row, x] * o[row, x] (the softmax backward's row term), one
// warp per row.
extern "C" __global__ void attention_delta_f32(const float* __restrict__ o, const float* __restrict__ dout, float* __restrict__ delta,
                                               long long rows, int dv) {
    long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    float s = 0.0f;
    for (int x = lane; x < dv; x += 32) s += o[row * dv + x] * dout[row * dv + x];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) delta[row] = s;
}

// The flash-style backward's shared tiles: BT query rows and BT keys at a time, rows padded by one float so the
// column reads of the score tile hit distinct banks. Each thread keeps at most ATT_BWD_ACC accumulators, so
// BT * max(D, Dv) <= 256 * ATT_BWD_ACC (the host picks BT to fit).
#define ATT_BWD_ACC 8
#define ATT_BWD_THREADS 256

// Whether query i (absolute key limit `klim` of its batch entry) sees key j.
__device__ __forceinline__ bool att_visible(int i, int j, int klim, int causal, int q_offset) {
    return j < klim && (!causal || j <= q_offset + i);
}

// The score tile P = exp(scale * Q K^T - lse) and dS = P * (dO V^T - delta) of query rows i0.. (nq of them,
// staged in Qs/dOs/Ls/Es) against keys j0.. (nk, in Ks/Vs), into Ps/dSs [BT, BT]; invisible pairs get 0.
__device__ void att_bwd_tile(const float* Qs, const float* dOs, const float* Ks, const float* Vs, const float* Ls,
                             const float* Es, float* Ps, float* dSs, int BT, int D, int Dv, int i0, int nq, int j0, int nk,
                             int klim, int causal, int q_offset, float scale) {
    int ldq = D + 1, ldv = Dv + 1;
    for (int e = threadIdx.x; e < BT * BT; e += blockDim.x) {
        int r = e / BT, c = e % BT;
        float p = 0.0f, ds = 0.0f;
        if (r < nq && c < nk && att_visible(i0 + r, j0 + c, klim, causal, q_offset)) {
            float s = 0.0f;
            for (int x = 0; x < D; x++) s += Qs[r * ldq + x] * Ks[c * ldq + x];
            p = expf(s * scale - Ls[r]);
            float dp = 0.0f;
            for (int x = 0; x < Dv; x++) dp += dOs[r * ldv + x] * Vs[c * ldv + x];
            ds = p * (dp - Es[r]);
        }
        if (Ps) Ps[e] = p;
        dSs[e] = ds;
    }
}

// Stage rows row0.. (n of them, the rest of the BT rows zero) of a [rows, w] matrix into a padded tile.
__device__ void att_stage(float* dst, const float* src, int row0, int n, int BT, int w) {
    int ld = w + 1;
    for (int e = threadIdx.x; e < BT * w; e += blockDim.x) {
        int r = e / w, x = e % w;
        dst[r * ld + x] = r < n ? src[(long long)(row0 + r) * w + x] : 0.0f;
    }
}

// Attention backward, step 2: dK and dV of one tile of BT keys of one (batch, head), looping over the query tiles
// that can see them: dV += P^T dO, dK += scale * dS^T Q. Grid: B*H*ceil(Tk/BT) blocks of ATT_BWD_THREADS;
// dynamic shared memory: (2*BT*(D+1) + 2*BT*(Dv+1) + 2*BT*BT + 2*BT) floats.
extern "C" __global__ void attention_bwd_dkdv_f32(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                                  const float* __restrict__ dout, const float* __restrict__ lse,
                                                  const float* __restrict__ delta, float* __restrict__ dk, float* __restrict__ dv,
                                                  int H, int Tq, int Tk, int D, int Dv, float scale, int causal, int q_offset,
                                                  const int* __restrict__ kv_len, int BT) {
    GATO_DYNAMIC_SMEM(float, smem);
    int tiles = (Tk + BT - 1) / BT;
    long long bh = blockIdx.x / tiles;
    int j0 = (int)(blockIdx.x % tiles) * BT;
    int b = (int)(bh / H);
    int klim = kv_len ? min(Tk, kv_len[b]) : Tk;
    int nk = min(BT, Tk - j0);
    int ldq = D + 1, ldv = Dv + 1;
    float* Ks = smem;
    float* Vs = Ks + BT * ldq;
    float* Qs = Vs + BT * ldv;
    float* dOs = Qs + BT * ldq;
    float* Ps = dOs + BT * ldv;
    float* dSs = Ps + BT * BT;
    float* Ls = dSs + BT * BT;
    float* Es = Ls + BT;
    const float* qb = q + bh * (long long)Tq * D;
    const float* ob = dout + bh * (long long)Tq * Dv;
    att_stage(Ks, k + bh * (long long)Tk * D, j0, nk, BT, D);
    att_stage(Vs, v + bh * (long long)Tk * Dv, j0, nk, BT, Dv);
    float acc_k[ATT_BWD_ACC], acc_v[ATT_BWD_ACC];
    for (int t = 0; t < ATT_BWD_ACC; t++) { acc_k[t] = 0.0f; acc_v[t] = 0.0f; }
    // Causal: query i sees key j0 only from i = j0 - q_offset on; keys at or past klim are seen by nobody.
    int i_start = causal ? max(0, j0 - q_offset) : 0;
    if (j0 >= klim) i_start = Tq;
    for (int i0 = i_start; i0 < Tq; i0 += BT) {
        int nq = min(BT, Tq - i0);
        __syncthreads();
        att_stage(Qs, qb, i0, nq, BT, D);
        att_stage(dOs, ob, i0, nq, BT, Dv);
        for (int r = threadIdx.x; r < BT; r += blockDim.x) {
            Ls[r] = r < nq ? lse[bh * Tq + i0 + r] : 0.0f;
            Es[r] = r < nq ? delta[bh * Tq + i0 + r] : 0.0f;
        }
        __syncthreads();
        att_bwd_tile(Qs, dOs, Ks, Vs, Ls, Es, Ps, dSs, BT, D, Dv, i0, nq, j0, nk, klim, causal, q_offset, scale);
        __syncthreads();
        for (int t = 0; t < ATT_BWD_ACC; t++) {
            int e = threadIdx.x + t * blockDim.x;
            if (e < BT * Dv) {
                int c = e / Dv, x = e % Dv;
                float s = 0.0f;
                for (int r = 0; r < nq; r++) s += Ps[r * BT + c] * dOs[r * ldv + x];
                acc_v[t] += s;
            }
            if (e < BT * D) {
                int c = e / D, x = e % D;
                float s = 0.0f;
                for (int r = 0; r < nq; r++) s += dSs[r * BT + c] * Qs[r * ldq + x];
                acc_k[t] += s;
            }
        }
    }
    for (int t = 0; t < ATT_BWD_ACC; t++) {
        int e = threadIdx.x + t * blockDim.x;
        if (e < BT * Dv && e / Dv < nk) dv[(bh * Tk + j0) * Dv + e] = acc_v[t];
        if (e < BT * D && e / D < nk) dk[(bh * Tk + j0) * D + e] = acc_k[t] * scale;
    }
}

// Attention backward, step 3: dQ of one tile of BT query rows, looping over the key tiles they see:
// dQ = scale * dS K. The scores are recomputed rather than shared with step 2, so neither step needs atomics.
// Grid: B*H*ceil(Tq/BT) blocks of ATT_BWD_THREADS; dynamic shared memory:
// (2*BT*(D+1) + 2*BT*(Dv+1) + BT*BT + 2*BT) floats.
extern "C" __global__ void attention_bwd_dq_f32(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                                const float* __restrict__ dout, const float* __restrict__ lse,
                                                const float* __restrict__ delta, float* __restrict__ dq,
                                                int H, int Tq, int Tk, int D, int Dv, float scale, int causal, int q_offset,
                                                const int* __restrict__ kv_len, int BT) {
    GATO_DYNAMIC_SMEM(float, smem);
    int tiles = (Tq + BT - 1) / BT;
    long long bh = blockIdx.x / tiles;
    int i0 = (int)(blockIdx.x % tiles) * BT;
    int b = (int)(bh / H);
    int klim = kv_len ? min(Tk, kv_len[b]) : Tk;
    int nq = min(BT, Tq - i0);
    int ldq = D + 1, ldv = Dv + 1;
    float* Qs = smem;
    float* dOs = Qs + BT * ldq;
    float* Ks = dOs + BT * ldv;
    float* Vs = Ks + BT * ldq;
    float* dSs = Vs + BT * ldv;
    float* Ls = dSs + BT * BT;
    float* Es = Ls + BT;
    const float* kb = k + bh * (long long)Tk * D;
    const float* vb = v + bh * (long long)Tk * Dv;
    att_stage(Qs, q + bh * (long long)Tq * D, i0, nq, BT, D);
    att_stage(dOs, dout + bh * (long long)Tq * Dv, i0, nq, BT, Dv);
    for (int r = threadIdx.x; r < BT; r += blockDim.x) {
        Ls[r] = r < nq ? lse[bh * Tq + i0 + r] : 0.0f;
        Es[r] = r < nq ? delta[bh * Tq + i0 + r] : 0.0f;
    }
    float acc[ATT_BWD_ACC];
    for (int t = 0; t < ATT_BWD_ACC; t++) acc[t] = 0.0f;
    // The last row of the tile sees the most keys.
    int kend = causal ? min(klim, q_offset + i0 + nq) : klim;
    for (int j0 = 0; j0 < kend; j0 += BT) {
        int nk = min(BT, Tk - j0);
        __syncthreads();
        att_stage(Ks, kb, j0, nk, BT, D);
        att_stage(Vs, vb, j0, nk, BT, Dv);
        __syncthreads();
        att_bwd_tile(Qs, dOs, Ks, Vs, Ls, Es, (float*)0, dSs, BT, D, Dv, i0, nq, j0, nk, klim, causal, q_offset, scale);
        __syncthreads();
        for (int t = 0; t < ATT_BWD_ACC; t++) {
            int e = threadIdx.x + t * blockDim.x;
            if (e < BT * D) {
                int r = e / D, x = e % D;
                float s = 0.0f;
                for (int c = 0; c < nk; c++) s += dSs[r * BT + c] * Ks[c * ldq + x];
                acc[t] += s;
            }
        }
    }
    for (int t = 0; t < ATT_BWD_ACC; t++) {
        int e = threadIdx.x + t * blockDim.x;
        if (e < BT * D && e / D < nq) dq[(bh * Tq + i0) * D + e] = acc[t] * scale;
    }
}

// Sum of squares of x [n] in f64, one partial per block into partials[blockIdx.x] (the host adds the partials of
// every tensor with sum_f64, in a fixed order).
extern "C" __global__ void sum_squares_partial_f32(const float* __restrict__ x, long long n, double* __restrict__ partials) {
    double s = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        double v = (double)x[i];
        s += v * v;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// out[0] = sum(x[0..n]) in f64, one block.
extern "C" __global__ void sum_f64(const double* __restrict__ x, double* __restrict__ out, long long n) {
    double s = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) out[0] = s;
}

// One fused AdamW step over n values, in place, in exactly the order of AdamWConstants::update (gato-core)
// (adamw_update, shared with adamw_clipped_f32):
// g *= scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p = p decay - step (m / (sqrt(v) inv_sqrt_c2 + eps)).
__device__ __forceinline__ void adamw_update(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                             float* __restrict__ v, long long n, float scale, float decay, float b1,
                                             float omb1, float b2, float omb2, float step_size, float inv_sqrt_c2,
                                             float eps) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float gi = g[i] * scale;
        float mi = b1 * m[i] + omb1 * gi;
        float vi = b2 * v[i] + omb2 * (gi * gi);
        float denom = sqrtf(vi) * inv_sqrt_c2 + eps;
        p[i] = p[i] * decay - step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" __global__ void adamw_f32(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v,
                                     long long n, float scale, float decay, float b1, float omb1, float b2, float omb2,
                                     float step_size, float inv_sqrt_c2, float eps) {
    adamw_update(p, g, m, v, n, scale, decay, b1, omb1, b2, omb2, step_size, inv_sqrt_c2, eps);
}

// Tiled causal attention forward for many query rows (training's full sequences): one block per (batch, head,
// tile of BT query rows) stages its queries once and loops over the key tiles they see, so each K and V row is
// read once per tile rather than once per query row as in attention_f32 (kept for decoding's few rows). Online
// softmax per row across tiles; writes the output and each row's log-sum-exp like attention_f32. Grid:
// B*H*ceil(Tq/BT) blocks of ATT_BWD_THREADS; dynamic shared memory: (2*BT*(D+1) + BT*(Dv+1) + BT*BT + 3*BT) floats.
extern "C" __global__ void attention_tiled_f32(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                               float* __restrict__ o, float* __restrict__ lse, int H, int Tq, int Tk, int D,
                                               int Dv, float scale, int causal, int q_offset, const int* __restrict__ kv_len,
                                               int BT) {
    GATO_DYNAMIC_SMEM(float, smem);
    int tiles = (Tq + BT - 1) / BT;
    long long bh = blockIdx.x / tiles;
    int i0 = (int)(blockIdx.x % tiles) * BT;
    int b = (int)(bh / H);
    int klim = kv_len ? min(Tk, kv_len[b]) : Tk;
    int nq = min(BT, Tq - i0);
    int ldq = D + 1, ldv = Dv + 1;
    float* Qs = smem;
    float* Ks = Qs + BT * ldq;
    float* Vs = Ks + BT * ldq;
    float* Ps = Vs + BT * ldv;
    float* Ms = Ps + BT * BT;
    float* Ls = Ms + BT;
    float* Cs = Ls + BT;
    const float* kb = k + bh * (long long)Tk * D;
    const float* vb = v + bh * (long long)Tk * Dv;
    att_stage(Qs, q + bh * (long long)Tq * D, i0, nq, BT, D);
    for (int r = threadIdx.x; r < BT; r += blockDim.x) { Ms[r] = NEG_INF; Ls[r] = 0.0f; }
    float acc[ATT_BWD_ACC];
    for (int t = 0; t < ATT_BWD_ACC; t++) acc[t] = 0.0f;
    int kend = causal ? min(klim, q_offset + i0 + nq) : klim;
    for (int j0 = 0; j0 < kend; j0 += BT) {
        int nk = min(BT, Tk - j0);
        __syncthreads();
        att_stage(Ks, kb, j0, nk, BT, D);
        att_stage(Vs, vb, j0, nk, BT, Dv);
        __syncthreads();
        for (int e = threadIdx.x; e < BT * BT; e += blockDim.x) {
            int r = e / BT, c = e % BT;
            float s = NEG_INF;
            if (r < nq && c < nk && att_visible(i0 + r, j0 + c, klim, causal, q_offset)) {
                float dot = 0.0f;
                for (int x = 0; x < D; x++) dot += Qs[r * ldq + x] * Ks[c * ldq + x];
                s = dot * scale;
            }
            Ps[e] = s;
        }
        __syncthreads();
        // Each row's running max and sum; the tile's scores become probabilities relative to the new max.
        for (int r = threadIdx.x; r < BT; r += blockDim.x) {
            float m_old = Ms[r], m_new = m_old;
            for (int c = 0; c < BT; c++) m_new = fmaxf(m_new, Ps[r * BT + c]);
            float corr = 1.0f, sum = 0.0f;
            if (m_new != NEG_INF) {
                corr = expf(m_old - m_new);
                for (int c = 0; c < BT; c++) {
                    float s = Ps[r * BT + c];
                    float p = s == NEG_INF ? 0.0f : expf(s - m_new);
                    Ps[r * BT + c] = p;
                    sum += p;
                }
            } else {
                for (int c = 0; c < BT; c++) Ps[r * BT + c] = 0.0f;
            }
            Ls[r] = Ls[r] * corr + sum;
            Ms[r] = m_new;
            Cs[r] = corr;
        }
        __syncthreads();
        for (int t = 0; t < ATT_BWD_ACC; t++) {
            int e = threadIdx.x + t * blockDim.x;
            if (e < BT * Dv) {
                int r = e / Dv, x = e % Dv;
                float s = 0.0f;
                for (int c = 0; c < nk; c++) s += Ps[r * BT + c] * Vs[c * ldv + x];
                acc[t] = acc[t] * Cs[r] + s;
            }
        }
    }
    __syncthreads();
    for (int t = 0; t < ATT_BWD_ACC; t++) {
        int e = threadIdx.x + t * blockDim.x;
        if (e < BT * Dv && e / Dv < nq) {
            float l = Ls[e / Dv];
            o[(bh * Tq + i0) * Dv + e] = l > 0.0f ? acc[t] / l : 0.0f;
        }
    }
    for (int r = threadIdx.x; r < nq; r += blockDim.x)
        lse[bh * Tq + i0 + r] = Ls[r] > 0.0f ? Ms[r] + logf(Ls[r]) : NEG_INF;
}

// AdamW with global-norm clipping decided on the device (OptimOps::adamw_clipped): the factor comes from the
// squared norm that sum_f64 left in norm_sq (clip_grad_norm_'s max_norm / (norm + 1e-6), at most 1; 1 when
// max_norm is 0), and nothing is written when the norm or the step's loss is not finite. Otherwise as adamw_f32.
extern "C" __global__ void adamw_clipped_f32(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                             float* __restrict__ v, long long n, float decay, float b1, float omb1, float b2,
                                             float omb2, float step_size, float inv_sqrt_c2, float eps,
                                             const double* __restrict__ norm_sq, const float* __restrict__ loss,
                                             double max_norm) {
    double ns = norm_sq[0];
    float l = loss[0];
    if (!isfinite(ns) || !isfinite(l)) return;
    double factor = max_norm > 0.0 ? fmin(1.0, max_norm / (sqrt(ns) + 1e-6)) : 1.0;
    adamw_update(p, g, m, v, n, (float)factor, decay, b1, omb1, b2, omb2, step_size, inv_sqrt_c2, eps);
}

// out = (loss, squared norm): the two numbers a training step reads back, in one copy.
extern "C" __global__ void pack_loss_norm(const float* __restrict__ loss, const double* __restrict__ norm_sq, double* __restrict__ out) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[0] = (double)loss[0];
        out[1] = norm_sq[0];
    }
}
