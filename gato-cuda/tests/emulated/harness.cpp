// Host entry point of the emulated kernels (see cuda_host.h): emu_launch(name, grid, block, smem, args) runs the
// kernel `name` with cuLaunchKernel's argument convention (args[i] points at the i-th parameter's value).
// Compiled after the kernel sources, which tests/emulated/harness.rs concatenates in front of this file.
#include <cstdio>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace emu {
template <class... A, std::size_t... I>
void call_packed(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}
template <class... A>
std::function<void(void**)> packed(void (*k)(A...)) {
    return [k](void** args) { call_packed(k, args, std::index_sequence_for<A...>{}); };
}
}  // namespace emu

#define EMU(name) {#name, emu::packed(&name)}

static const std::unordered_map<std::string, std::function<void(void**)>>& kernels() {
    static const std::unordered_map<std::string, std::function<void(void**)>> table = {
        EMU(unary_f32), EMU(binary_f32), EMU(affine_f32), EMU(geglu_f32), EMU(layer_norm_f32), EMU(group_norm_f32),
        EMU(softmax_f32), EMU(attention_f32), EMU(embedding_f32), EMU(im2col_f32), EMU(add_channel_bias_f32),
        EMU(f32_to_f16), EMU(f16_to_f32), EMU(f32_to_bf16), EMU(bf16_to_f32), EMU(block_copy_f32), EMU(permute_f32),
        EMU(unary_backward_f32), EMU(geglu_backward_f32), EMU(sum_rows_f32), EMU(channel_sum_f32),
        EMU(layer_norm_backward_f32), EMU(group_norm_backward_f32), EMU(embedding_rank_u32), EMU(exclusive_scan_i32), EMU(embedding_order_u32), EMU(embedding_gather_grad_f32), EMU(col2im_f32),
        EMU(cross_entropy_f32), EMU(scaled_sum_f32), EMU(attention_delta_f32), EMU(attention_bwd_dkdv_f32),
        EMU(attention_bwd_dq_f32), EMU(attention_tiled_f32), EMU(sum_squares_partial_f32), EMU(sum_f64), EMU(adamw_f32), EMU(adamw_clipped_f32), EMU(pack_loss_norm),
    };
    return table;
}

// 0: ran; 1: no such kernel. Callers on several threads are serialised.
extern "C" int emu_launch(const char* name, unsigned grid, unsigned block, unsigned smem_bytes, void** args) {
    auto it = kernels().find(name);
    if (it == kernels().end()) return 1;
    const auto& run = it->second;
    // One launch at a time: the emulator's block state and the kernels' static shared arrays are global.
    static std::mutex one_at_a_time;
    std::lock_guard<std::mutex> lock(one_at_a_time);
    emu::launch(grid, block, smem_bytes, [&] { run(args); });
    return 0;
}
