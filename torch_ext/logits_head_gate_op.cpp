// PyTorch operator dsa_indexer::logits_head_gate: schema registration (TORCH_LIBRARY), argument
// checks, and the CPU, Meta and Functionalize kernels. The CUDA kernel lives in
// cuda_logits_head_gate_op.cpp, compiled only when torch has CUDA.
#include "logits_head_gate_op.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace dsa_indexer::torch_ext {

namespace {

constexpr const char* kOp = "dsa_indexer.logits_head_gate: ";

// q_scale and out: [T, H, 1] or [T, H].
bool is_th(const at::Tensor& t, const c10::SymInt& T, const c10::SymInt& H) {
  if (t.dim() == 3) return t.sym_size(0) == T && t.sym_size(1) == H && t.sym_size(2) == 1;
  if (t.dim() == 2) return t.sym_size(0) == T && t.sym_size(1) == H;
  return false;
}

void check_dtype(const at::Tensor& t, const char* name, at::ScalarType expected) {
  TORCH_CHECK(t.scalar_type() == expected, kOp, name, " must have dtype ", expected, ", got ",
              t.scalar_type());
}

// All tensors on one device. The reference is the first non-CPU argument (x if all are on the
// CPU), so a CPU tensor among GPU ones is the one named, whichever argument it is.
void check_devices(const at::Tensor* const* args, const char* const* names, int n) {
  int ref = 0;
  for (int i = 0; i < n; ++i) {
    if (!args[i]->device().is_cpu()) {
      ref = i;
      break;
    }
  }
  const c10::Device dev = args[ref]->device();
  for (int i = 0; i < n; ++i) {
    TORCH_CHECK(args[i]->device() == dev, kOp, names[i], " must be on the same device as ",
                names[ref], " (", dev, "), got ", args[i]->device());
  }
}

// Rows with unit column stride and row stride >= K; size-1 dimensions carry no stride.
void check_rows(const at::Tensor& t, const char* name, const c10::SymInt& rows,
                const c10::SymInt& K) {
  const bool unit_col = K == 1 || t.sym_stride(1) == 1;
  const bool row_ok = rows <= 1 || t.sym_stride(0) >= K;
  TORCH_CHECK(unit_col && row_ok, kOp, name,
              " must have unit column stride and row stride >= K=", K, ", got strides ",
              t.sym_strides(), " for shape ", t.sym_sizes(), " (call .contiguous() on it)");
}

}  // namespace

Dims check_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& q_scale,
                const at::Tensor* out) {
  // 1. Rank and shape.
  TORCH_CHECK(x.dim() == 2, kOp, "x must be 2-D [T, K], got shape ", x.sym_sizes());
  TORCH_CHECK(weight.dim() == 2, kOp, "weight must be 2-D [H, K], got shape ", weight.sym_sizes());
  Dims d{x.sym_size(0), weight.sym_size(0), x.sym_size(1)};
  TORCH_CHECK(d.K >= 1, kOp, "x must have K >= 1 columns, got shape ", x.sym_sizes());
  TORCH_CHECK(weight.sym_size(1) == d.K, kOp, "weight must have shape [H, K] with K=", d.K,
              " (from x), got ", weight.sym_sizes());
  TORCH_CHECK(d.H >= 1, kOp, "weight must have H >= 1 rows, got shape ", weight.sym_sizes());
  TORCH_CHECK(is_th(q_scale, d.T, d.H), kOp, "q_scale must have shape [T, H, 1] or [T, H] with T=",
              d.T, ", H=", d.H, ", got ", q_scale.sym_sizes());
  if (out != nullptr) {
    TORCH_CHECK(is_th(*out, d.T, d.H), kOp, "out must have shape [T, H, 1] or [T, H] with T=", d.T,
                ", H=", d.H, ", got ", out->sym_sizes());
  }
  // 2. Dtype.
  check_dtype(x, "x", at::kBFloat16);
  check_dtype(weight, "weight", at::kBFloat16);
  check_dtype(q_scale, "q_scale", at::kFloat);
  if (out != nullptr) check_dtype(*out, "out", at::kFloat);
  // 3. Device: one for all (a CPU tensor mixed with a GPU one, or two GPUs, is named).
  const at::Tensor* args[] = {&x, &weight, &q_scale, out};
  const char* names[] = {"x", "weight", "q_scale", "out"};
  check_devices(args, names, out != nullptr ? 4 : 3);
  // 4. Strides (q_scale and out take any).
  check_rows(x, "x", d.T, d.K);
  check_rows(weight, "weight", d.H, d.K);
  return d;
}

void check_out_storage(const at::Tensor& out) {
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, kOp,
              "out must not have overlapping elements (e.g. an expanded tensor), got strides ",
              out.strides(), " for shape ", out.sizes());
}

LogitsHeadGateParams make_params(const at::Tensor& x, const at::Tensor& weight,
                                 double n_heads_inv_sqrt, double softmax_scale,
                                 const at::Tensor& q_scale, bool static_weight,
                                 const at::Tensor& out) {
  LogitsHeadGateParams p;
  p.T = x.size(0);
  p.K = x.size(1);
  p.H = weight.size(0);
  p.x = x.const_data_ptr();
  p.x_row_stride = x.stride(0);
  p.weight = weight.const_data_ptr();
  p.weight_row_stride = weight.stride(0);
  p.q_scale = q_scale.const_data_ptr<float>();
  p.q_scale_stride_t = q_scale.stride(0);
  p.q_scale_stride_h = q_scale.stride(1);
  p.out = out.mutable_data_ptr<float>();
  p.out_stride_t = out.stride(0);
  p.out_stride_h = out.stride(1);
  p.n_heads_inv_sqrt = static_cast<float>(n_heads_inv_sqrt);
  p.softmax_scale = static_cast<float>(softmax_scale);
  p.static_weight = static_weight;
  return p;
}

namespace {

// ---- CPU --------------------------------------------------------------------------------------
at::Tensor& out_cpu(const at::Tensor& x, const at::Tensor& weight, double n_heads_inv_sqrt,
                    double softmax_scale, const at::Tensor& q_scale, bool static_weight,
                    at::Tensor& out) {
  check_args(x, weight, q_scale, &out);
  check_out_storage(out);
  if (x.size(0) == 0) return out;
  const auto p = make_params(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight, out);
  call_core([&] { logits_head_gate_cpu(p); });
  return out;
}

at::Tensor functional_cpu(const at::Tensor& x, const at::Tensor& weight, double n_heads_inv_sqrt,
                          double softmax_scale, const at::Tensor& q_scale, bool static_weight) {
  check_args(x, weight, q_scale, nullptr);
  at::Tensor out = at::empty({x.size(0), weight.size(0), 1}, x.options().dtype(at::kFloat));
  if (x.size(0) == 0) return out;
  const auto p = make_params(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight, out);
  call_core([&] { logits_head_gate_cpu(p); });
  return out;
}

// ---- Meta (shapes only; also what FakeTensor runs under torch.compile) ---------------------------
at::Tensor& out_meta(const at::Tensor& x, const at::Tensor& weight, double, double,
                     const at::Tensor& q_scale, bool, at::Tensor& out) {
  check_args(x, weight, q_scale, &out);
  return out;
}

at::Tensor functional_meta(const at::Tensor& x, const at::Tensor& weight, double, double,
                           const at::Tensor& q_scale, bool) {
  const Dims d = check_args(x, weight, q_scale, nullptr);
  return at::empty_symint({d.T, d.H, c10::SymInt(1)}, x.options().dtype(at::kFloat));
}

// ---- Functionalize (torch.compile of the out= overload) ----------------------------------------
// NOTE: the out= overload returns an alias of `out`, which auto_functionalize does not support, so
// functionalization would reject it. Rewriting it as functional op + out.copy_() gives the
// compiler two ops it knows how to functionalize.
at::Tensor& out_functionalize(const at::Tensor& x, const at::Tensor& weight,
                              double n_heads_inv_sqrt, double softmax_scale,
                              const at::Tensor& q_scale, bool static_weight, at::Tensor& out) {
  check_args(x, weight, q_scale, &out);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("dsa_indexer::logits_head_gate", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double,
                                               double, const at::Tensor&, bool)>();
  const at::Tensor r = op.call(x, weight, n_heads_inv_sqrt, softmax_scale, q_scale, static_weight);
  out.copy_(r.view_symint(out.sym_sizes()));
  return out;
}

}  // namespace

}  // namespace dsa_indexer::torch_ext

// static_weight (keyword only, default False): LogitsHeadGateParams::static_weight, a promise that
// no earlier work on the stream writes the weight (a model parameter); same result, faster on sm_90a.
TORCH_LIBRARY(dsa_indexer, m) {
  m.def(
      "logits_head_gate(Tensor x, Tensor weight, float n_heads_inv_sqrt, float softmax_scale, "
      "Tensor q_scale, *, bool static_weight=False) -> Tensor");
  m.def(
      "logits_head_gate.out(Tensor x, Tensor weight, float n_heads_inv_sqrt, float softmax_scale, "
      "Tensor q_scale, *, bool static_weight=False, Tensor(a!) out) -> Tensor(a!)");
}

TORCH_LIBRARY_IMPL(dsa_indexer, CPU, m) {
  m.impl("logits_head_gate", &dsa_indexer::torch_ext::functional_cpu);
  m.impl("logits_head_gate.out", &dsa_indexer::torch_ext::out_cpu);
}

TORCH_LIBRARY_IMPL(dsa_indexer, Meta, m) {
  m.impl("logits_head_gate", &dsa_indexer::torch_ext::functional_meta);
  m.impl("logits_head_gate.out", &dsa_indexer::torch_ext::out_meta);
}

TORCH_LIBRARY_IMPL(dsa_indexer, Functionalize, m) {
  m.impl("logits_head_gate.out", &dsa_indexer::torch_ext::out_functionalize);
}
