// A host emulation of the CUDA C subset gato-cuda's kernels use, so that kernels.cu + kernels_backward.cu compile
// with a C++20 compiler and run on the CPU, for tests on machines without a GPU (tests/emulated_*.rs). Force-included
// before the kernels (g++ -include). One block runs at a time with one OS thread per CUDA thread:
// __syncthreads is a barrier over the block, a warp shuffle a barrier over the warp, and a thread that returns
// from the kernel drops out of both (as an exited CUDA thread stops counting). Static __shared__ arrays become
// function statics (one block at a time makes them per-block); dynamic shared memory is one buffer per launch.
// This checks the kernels' arithmetic, indexing, tiling and synchronisation; it cannot check timing, the memory
// model of a real GPU, or the Rust launch code (argument order, grid sizes), which the GPU tests do.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <algorithm>
#include <vector>

#define GATO_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define GATO_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(emu::dyn_smem)

struct dim3 { unsigned x = 1, y = 1, z = 1; };

namespace emu {
struct Warp {
    std::unique_ptr<std::barrier<>> bar;
    unsigned long long slot[32];
};
inline thread_local unsigned tid;
inline thread_local unsigned bid;
inline unsigned block_threads, grid_blocks;
inline std::unique_ptr<std::barrier<>> block_bar;
inline std::vector<Warp> warps;
inline unsigned char* dyn_smem;
}  // namespace emu

#define threadIdx (dim3{emu::tid, 0, 0})
#define blockIdx (dim3{emu::bid, 0, 0})
#define blockDim (dim3{emu::block_threads, 1, 1})
#define gridDim (dim3{emu::grid_blocks, 1, 1})

inline void __syncthreads() { emu::block_bar->arrive_and_wait(); }

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    emu::Warp& w = emu::warps[emu::tid >> 5];
    unsigned lane = emu::tid & 31;
    std::memcpy(&w.slot[lane], &v, sizeof(T));
    w.bar->arrive_and_wait();
    T r;
    std::memcpy(&r, &w.slot[lane ^ (unsigned)o], sizeof(T));
    w.bar->arrive_and_wait();
    return r;
}

inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
    std::atomic_ref<unsigned long long> a(*p);
    unsigned long long old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {}
    return old;
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::isfinite;
using std::max;
using std::min;

namespace emu {
// Run `kernel` over `grid` blocks of `block` threads (block a multiple of 32 or below it).
inline void launch(unsigned grid, unsigned block, unsigned smem_bytes, const std::function<void()>& kernel) {
    std::vector<unsigned char> smem(smem_bytes + 16);
    dyn_smem = smem.data();
    grid_blocks = grid;
    block_threads = block;
    auto fresh = [block]() noexcept {
        block_bar = std::make_unique<std::barrier<>>(block);
        warps = std::vector<Warp>((block + 31) / 32);
        for (unsigned w = 0; w < warps.size(); w++)
            warps[w].bar = std::make_unique<std::barrier<>>(std::min(32u, block - 32 * w));
    };
    // Every thread meets here before each block; the completion step (run once) gives the block new barriers.
    std::barrier<decltype(fresh)> next_block(block, fresh);
    std::vector<std::jthread> threads;
    for (unsigned t = 0; t < block; t++) {
        threads.emplace_back([&, t] {
            tid = t;
            for (unsigned b = 0; b < grid; b++) {
                next_block.arrive_and_wait();
                bid = b;
                kernel();
                block_bar->arrive_and_drop();
                warps[t >> 5].bar->arrive_and_drop();
            }
        });
    }
}
}  // namespace emu
