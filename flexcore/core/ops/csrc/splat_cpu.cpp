// CPU kernels of the push + splat projection, compiled twice: for the x86-64 baseline and,
// with GCC on x86-64, for AVX2 + FMA (chosen at run time from the CPU's features), so one
// build runs on any x86-64 machine and uses 8-wide vectors where they exist.
#include "splat_cpu.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

// The baseline variant passes 32-byte vectors between always-inline helpers only.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace flexcore {
namespace cpu {

#define FLEXCORE_CPU_ISA baseline
#include "splat_cpu_impl.h"
#undef FLEXCORE_CPU_ISA

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FLEXCORE_CPU_HAVE_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FLEXCORE_CPU_ISA avx2
#define FLEXCORE_CPU_AVX2 1  // GCC's target pragma does not define __AVX2__
#include "splat_cpu_impl.h"
#undef FLEXCORE_CPU_AVX2
#undef FLEXCORE_CPU_ISA
#pragma GCC pop_options
#endif

namespace {

bool use_avx2() {
#ifdef FLEXCORE_CPU_HAVE_AVX2
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

}  // namespace

void forward_item(const Problem& p, const Item& it, float* cells, float* proj) {
#ifdef FLEXCORE_CPU_HAVE_AVX2
  if (use_avx2()) return avx2::forward_item(p, it, cells, proj);
#endif
  baseline::forward_item(p, it, cells, proj);
}

void backward_item(const Problem& p, const Item& it, const float* grad_cells,
                   float* grad_density, float* grad_proj, float* proj) {
#ifdef FLEXCORE_CPU_HAVE_AVX2
  if (use_avx2()) return avx2::backward_item(p, it, grad_cells, grad_density, grad_proj, proj);
#endif
  baseline::backward_item(p, it, grad_cells, grad_density, grad_proj, proj);
}

const char* isa() { return use_avx2() ? "avx2" : "baseline"; }

}  // namespace cpu
}  // namespace flexcore
