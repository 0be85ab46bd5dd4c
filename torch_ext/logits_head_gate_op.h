// PyTorch binding of dsa_indexer::logits_head_gate: argument checks shared by the CPU, CUDA and
// Meta kernels, and the translation of tensors into the torch-free LogitsHeadGateParams.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>

#include "dsa_indexer/logits_head_gate.h"

namespace dsa_indexer::torch_ext {

struct Dims {
  c10::SymInt T, H, K;
};

// Checks every argument in a fixed order (rank and shape, dtype, device, strides) and throws a
// RuntimeError naming the argument, what was expected and what was given. `out` may be null
// (functional form). SymInt-based, so the Meta kernel runs it under dynamic shapes.
Dims check_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& q_scale,
                const at::Tensor* out);

// Checks that only make sense on real storage (run by the CPU and CUDA kernels after check_args).
void check_out_storage(const at::Tensor& out);

// The core's params for validated tensors of concrete size; out is [T, H, 1] or [T, H].
LogitsHeadGateParams make_params(const at::Tensor& x, const at::Tensor& weight,
                                 double n_heads_inv_sqrt, double softmax_scale,
                                 const at::Tensor& q_scale, bool static_weight,
                                 const at::Tensor& out);

// Runs fn(), rethrowing a dsa_indexer::Error from the core as a c10::Error (RuntimeError in
// Python) so that every failure of the operator surfaces the same way.
template <typename Fn>
void call_core(Fn&& fn) {
  try {
    fn();
  } catch (const dsa_indexer::Error& e) {
    TORCH_CHECK(false, e.what());
  }
}

}  // namespace dsa_indexer::torch_ext
