// y = x W^T + b for one to three rows of bfloat16 x: GPT-2's decoding steps on a CPU with AVX-512 BF16.
//
// At so few rows a linear layer is a pass over its weight, and its speed is the speed of that pass.
// oneDNN's packed product read GPT-2's 250 MB of bfloat16 weights at about half the rate a plain
// reduction streams them on a 2-core Zen 4; this reads each weight row once, start to end, and
// dots it with every input row (docs/benchmarks.md has the figures). One weight row at a time: taking
// two or four weight rows together, as GEMM kernels do, took 40% longer here.
//
// Accumulation is float32 (vdpbf16ps multiplies bfloat16 pairs exactly, flushing denormals, and adds them in
// float32), the bias is added in float32, and the sum is rounded once to bfloat16, nearest-even, as oneDNN does.
//
// gpt2_step, below, is one whole decoding step of such a GPT-2 over this kernel, in one call from Python.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/add.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/tanh.h>
#include <cmath>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <torch/library.h>

namespace {

constexpr int64_t kMaxRows = 3;  // at 4 rows oneDNN was as fast: loads of x outnumber weight loads

template <int M>
__attribute__((target("avx512f,avx512bw,avx512bf16")))
void dot_rows(const c10::BFloat16* x, const c10::BFloat16* w, const c10::BFloat16* bias, c10::BFloat16* y,
              int64_t K, int64_t N, int64_t begin, int64_t end) {
  const int64_t body = K - K % 32;
  const __mmask32 tail = static_cast<__mmask32>((uint64_t{1} << (K % 32)) - 1);
  for (int64_t n = begin; n < end; ++n) {
    const c10::BFloat16* row = w + n * K;
    __m512 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int64_t k = 0; k < body; k += 32) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(row + k);
      for (int m = 0; m < M; ++m)
        acc[m] = _mm512_dpbf16_ps(acc[m], wv, (__m512bh)_mm512_loadu_si512(x + m * K + k));
    }
    if (tail) {  // masked lanes load as zeros and add nothing
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(tail, row + body);
      for (int m = 0; m < M; ++m)
        acc[m] = _mm512_dpbf16_ps(acc[m], wv, (__m512bh)_mm512_maskz_loadu_epi16(tail, x + m * K + body));
    }
    const float b = bias ? static_cast<float>(bias[n]) : 0.0f;
    for (int m = 0; m < M; ++m) y[m * N + n] = c10::BFloat16(_mm512_reduce_add_ps(acc[m]) + b);
  }
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), "x (M, K) and weight (N, K)");
  TORCH_CHECK(x.size(0) >= 1 && x.size(0) <= kMaxRows, "1 to ", kMaxRows, " rows, got ", x.size(0));
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16, "bfloat16 only");
  TORCH_CHECK(x.is_contiguous() && weight.is_contiguous(), "contiguous x and weight");
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->scalar_type() == at::kBFloat16
                        && bias->numel() == weight.size(0)), "a contiguous bfloat16 bias of N");
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  at::Tensor y = at::empty({M, N}, x.options());
  const auto* xp = x.const_data_ptr<c10::BFloat16>();
  const auto* wp = weight.const_data_ptr<c10::BFloat16>();
  const c10::BFloat16* bp = bias ? bias->const_data_ptr<c10::BFloat16>() : nullptr;
  auto* yp = y.mutable_data_ptr<c10::BFloat16>();
  // ~64 rows of 768 are 100 KB of weight: enough per thread to pay for waking it
  at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
    switch (M) {
      case 1: dot_rows<1>(xp, wp, bp, yp, K, N, begin, end); break;
      case 2: dot_rows<2>(xp, wp, bp, yp, K, N, begin, end); break;
      default: dot_rows<3>(xp, wp, bp, yp, K, N, begin, end); break;
    }
  });
  return y;
}

// x (..., K) -> (..., N), as vision/fast/bf16_rows.py's `linear` shapes it
at::Tensor rows_linear(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = weight.size(0);
  return linear(x.reshape({-1, x.size(-1)}).contiguous(), weight, bias).view(shape);
}

// transformers' NewGELUActivation (GPT-2's gelu_new), op for op and in its order, so it rounds as the module does
at::Tensor gelu_new(const at::Tensor& x) {
  const at::Tensor inner = at::mul(at::add(x, at::mul(at::pow(x, 3.0), 0.044715)), std::sqrt(2.0 / M_PI));
  return at::mul(at::mul(x, 0.5), at::add(at::tanh(inner), 1.0));
}

constexpr int64_t kBlockParams = 12;  // ln_1 (w, b), c_attn, attn.c_proj, ln_2, c_fc, mlp.c_proj (weight, bias each)

// One greedy step of a GPT-2 for one to three captions: vision/fast/gpt2_steps.py's `_forward` at one position, the
// same ATen calls in the same order (so the same bits), without Python between them.
// h (B, 1, D) embeddings at position `start`; params: kBlockParams per block, then ln_f (w, b) and the output
// layer's weight; kv: per block (2, B, H, length, head_dim), written at `start`. -> (B, vocab) float32 logits.
at::Tensor gpt2_step(const at::Tensor& x, at::TensorList params, at::TensorList kv, int64_t start, int64_t heads,
                     at::ArrayRef<double> scales, double eps) {
  const int64_t blocks = static_cast<int64_t>(kv.size()), B = x.size(0), T = x.size(1), D = x.size(2);
  TORCH_CHECK(T == 1 && static_cast<int64_t>(params.size()) == blocks * kBlockParams + 3
              && static_cast<int64_t>(scales.size()) == blocks, "one position, and every block's parameters");
  const int64_t end = start + T;
  for (const at::Tensor& cache : kv) TORCH_CHECK(end <= cache.size(3), "position ", start, " is past the KV buffer");
  at::Tensor h = x;
  for (int64_t l = 0; l < blocks; ++l) {
    const at::Tensor* p = params.data() + l * kBlockParams;
    const auto qkv = rows_linear(at::layer_norm(h, {D}, p[0], p[1], eps), p[2], p[3]).split(D, 2);  // (B, T, D) each
    const at::Tensor q = qkv[0].view({B, T, heads, -1}).transpose(1, 2);  // (B, H, T, head_dim)
    kv[l].select(0, 0).slice(2, start, end).copy_(qkv[1].view({B, T, heads, -1}).transpose(1, 2));
    kv[l].select(0, 1).slice(2, start, end).copy_(qkv[2].view({B, T, heads, -1}).transpose(1, 2));
    const at::Tensor attended = at::scaled_dot_product_attention(
        q, kv[l].select(0, 0).slice(2, 0, end), kv[l].select(0, 1).slice(2, 0, end), std::nullopt, 0.0, false,
        scales[l]);  // (B, H, T, head_dim)
    h = at::add(rows_linear(attended.transpose(1, 2).reshape({B, T, D}), p[4], p[5]), h);
    h = at::add(rows_linear(gelu_new(rows_linear(at::layer_norm(h, {D}, p[6], p[7], eps), p[8], p[9])), p[10], p[11]),
                h);
  }
  const at::Tensor* last = params.data() + blocks * kBlockParams;
  return rows_linear(at::layer_norm(h.slice(1, T - 1, T), {D}, last[0], last[1], eps), last[2], std::nullopt)
      .select(1, -1)
      .to(at::kFloat);  // (B, vocab)
}

}  // namespace

TORCH_LIBRARY(clipchat, m) {
  m.def("bf16_rows_linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  m.def("gpt2_step(Tensor x, Tensor[] params, Tensor(a!)[] kv, int start, int heads, float[] scales, float eps) -> Tensor");
}
TORCH_LIBRARY_IMPL(clipchat, CPU, m) {
  m.impl("bf16_rows_linear", &linear);
  m.impl("gpt2_step", &gpt2_step);
}
