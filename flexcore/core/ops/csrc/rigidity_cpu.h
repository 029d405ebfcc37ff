// CPU kernel of the as-rigid-as-possible penalty (see rigidity_cpu.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace flexcore {
namespace cpu {

// [penalty (B,), gradient (B, Nv, 3) or (0, Nv, 3)] of sum_c w_c max(0, tr FtF - 2 sum sigma + 3)
// per image. points (Nv, 3), edges_inv (Nc, 3, 3), weights (Nc,), displacements (B, Nv, 3):
// float32; cells (Nc, 4) int64.
std::vector<at::Tensor> rigidity_penalty(const at::Tensor& points, const at::Tensor& cells,
                                         const at::Tensor& edges_inv, const at::Tensor& weights,
                                         const at::Tensor& displacements, bool need_grad,
                                         int64_t iterations);

}  // namespace cpu
}  // namespace flexcore
