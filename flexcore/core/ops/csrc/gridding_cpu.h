// CPU kernel of the trilinear central-slice insertion (see gridding_cpu.cpp).
#pragma once

#include <ATen/core/Tensor.h>

namespace flexcore {
namespace cpu {

// Add B slices into sums (3, P, P, P/2+1) float32 in place: real and imaginary parts of
// Σ values, then Σ weights. values (B, P, P/2+1, 2) float32 (complex as pairs), weights
// (B, P, P/2+1) float32, matrices (B, 3, 3) float32 xyz (a slice point f lands at M f).
void insert_slices(at::Tensor sums, const at::Tensor& values, const at::Tensor& weights,
                   const at::Tensor& matrices);

}  // namespace cpu
}  // namespace flexcore
