// CUDA kernel of the PyTorch operator dsa_indexer::logits_head_gate: device guard from x, the
// caller's current stream, the output from torch's caching allocator; nothing else is allocated
// and the host never waits. Compiled only when torch has CUDA (see CMakeLists.txt).
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "logits_head_gate_op.h"

namespace dsa_indexer::torch_ext {

namespace {

void launch(const at::Tensor& x, const at::Tensor& weight, double n_heads_inv_sqrt,
            double softmax_scale, const at::Tensor& q_scale, bool static_weight, at::Tensor& out) {
  const auto p = make_params(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight, out);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(x.device().index()).stream();
  call_core([&] { logits_head_gate_cuda(p, stream); });
}

at::Tensor& out_cuda(const at::Tensor& x, const at::Tensor& weight, double n_heads_inv_sqrt,
                     double softmax_scale, const at::Tensor& q_scale, bool static_weight,
                     at::Tensor& out) {
  check_args(x, weight, q_scale, &out);
  check_out_storage(out);
  if (x.size(0) == 0) return out;
  const c10::cuda::CUDAGuard guard(x.device());
  launch(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight, out);
  return out;
}

at::Tensor functional_cuda(const at::Tensor& x, const at::Tensor& weight, double n_heads_inv_sqrt,
                           double softmax_scale, const at::Tensor& q_scale, bool static_weight) {
  check_args(x, weight, q_scale, nullptr);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({x.size(0), weight.size(0), 1}, x.options().dtype(at::kFloat));
  if (x.size(0) == 0) return out;
  launch(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight, out);
  return out;
}

}  // namespace

}  // namespace dsa_indexer::torch_ext

TORCH_LIBRARY_IMPL(dsa_indexer, CUDA, m) {
  m.impl("logits_head_gate", &dsa_indexer::torch_ext::functional_cuda);
  m.impl("logits_head_gate.out", &dsa_indexer::torch_ext::out_cuda);
}
