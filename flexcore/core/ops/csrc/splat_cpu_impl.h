// Body of the CPU kernels; splat_cpu.cpp includes it once per instruction set, each time in
// its own namespace FLEXCORE_CPU_ISA (no include guard on purpose). Per-image quantities are
// vectors of the kGroup images of a group (GCC/Clang vector extensions: one AVX2 register,
// two SSE or NEON registers); the layouts are described in splat_cpu.h.

namespace FLEXCORE_CPU_ISA {

constexpr int G = kGroup;
typedef float vf __attribute__((vector_size(4 * G)));
typedef int32_t vi __attribute__((vector_size(4 * G)));
typedef float vfu __attribute__((vector_size(4 * G), aligned(4)));  // unaligned access
typedef float v4u __attribute__((vector_size(16), aligned(4)));

#define FLEXCORE_INLINE inline __attribute__((always_inline))

FLEXCORE_INLINE vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
FLEXCORE_INLINE void store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
FLEXCORE_INLINE vf splat(float x) { return vf{} + x; }
FLEXCORE_INLINE vf select(vi mask, vf x) {  // x where mask, else +0
  return reinterpret_cast<vf>(reinterpret_cast<vi>(x) & mask);
}

// 4 per-image vectors (corner weights 00, 01, 10, 11) -> one 4-float record per image, and
// back. AVX2: in-register 4x4 transposes of each 128-bit half.
FLEXCORE_INLINE void to_records(vf c00, vf c01, vf c10, vf c11, float (*rec)[4]) {
#if defined(FLEXCORE_CPU_AVX2) && FLEXCORE_CPU_GROUP == 8
  const __m256 t0 = _mm256_unpacklo_ps(c00, c01), t1 = _mm256_unpacklo_ps(c10, c11);
  const __m256 t2 = _mm256_unpackhi_ps(c00, c01), t3 = _mm256_unpackhi_ps(c10, c11);
  const __m256 r04 = _mm256_shuffle_ps(t0, t1, 0x44), r15 = _mm256_shuffle_ps(t0, t1, 0xEE);
  const __m256 r26 = _mm256_shuffle_ps(t2, t3, 0x44), r37 = _mm256_shuffle_ps(t2, t3, 0xEE);
  _mm256_storeu2_m128(rec[4], rec[0], r04);
  _mm256_storeu2_m128(rec[5], rec[1], r15);
  _mm256_storeu2_m128(rec[6], rec[2], r26);
  _mm256_storeu2_m128(rec[7], rec[3], r37);
#else
  for (int g = 0; g < G; ++g) {
    rec[g][0] = c00[g];
    rec[g][1] = c01[g];
    rec[g][2] = c10[g];
    rec[g][3] = c11[g];
  }
#endif
}

FLEXCORE_INLINE void from_records(const float* base, const int32_t* at, vf& c00, vf& c01,
                                  vf& c10, vf& c11) {
#if defined(FLEXCORE_CPU_AVX2) && FLEXCORE_CPU_GROUP == 8
  const __m256 r04 = _mm256_loadu2_m128(base + at[4], base + at[0]);
  const __m256 r15 = _mm256_loadu2_m128(base + at[5], base + at[1]);
  const __m256 r26 = _mm256_loadu2_m128(base + at[6], base + at[2]);
  const __m256 r37 = _mm256_loadu2_m128(base + at[7], base + at[3]);
  const __m256 t0 = _mm256_unpacklo_ps(r04, r15), t1 = _mm256_unpacklo_ps(r26, r37);
  const __m256 t2 = _mm256_unpackhi_ps(r04, r15), t3 = _mm256_unpackhi_ps(r26, r37);
  c00 = _mm256_shuffle_ps(t0, t1, 0x44);
  c01 = _mm256_shuffle_ps(t0, t1, 0xEE);
  c10 = _mm256_shuffle_ps(t2, t3, 0x44);
  c11 = _mm256_shuffle_ps(t2, t3, 0xEE);
#else
  for (int g = 0; g < G; ++g) {
    const float* rec = base + at[g];
    c00[g] = rec[0];
    c01[g] = rec[1];
    c10[g] = rec[2];
    c11[g] = rec[3];
  }
#endif
}

FLEXCORE_INLINE float hsum(vf v) {
#if defined(FLEXCORE_CPU_AVX2) && FLEXCORE_CPU_GROUP == 8
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
#else
  float sum = 0.f;
  for (int g = 0; g < G; ++g) sum += v[g];
  return sum;
#endif
}

// End of the run of voxels from j on that share voxel j's tetrahedron (at most v1).
FLEXCORE_INLINE int64_t run_end(const int32_t* __restrict vidx, int64_t j, int64_t v1) {
  uint64_t head[2];
  std::memcpy(head, vidx + 4 * j, 16);
  int64_t end = j + 1;
  for (; end < v1; ++end) {
    uint64_t next[2];
    std::memcpy(next, vidx + 4 * end, 16);
    if (next[0] != head[0] || next[1] != head[1]) break;
  }
  return end;
}

struct Group {
  vf r[6];      // rows 0 and 1 of each image's rotation A: r[c][g] = A_g[c / 3][c % 3]
  vi base;      // first float of each image's cell plane
  float offset; // D/2 + 1: padded position of the centre
  float limit;  // D + 1: kept points have 0 <= q < limit
  int cells;    // D + 1 cells per row
};

// Images past the batch reuse the group's first image (their results are never read).
inline Group make_group(const Problem& p, int64_t b0) {
  Group a;
  const int d = p.image_size;
  for (int g = 0; g < G; ++g) {
    const int64_t b = b0 + g < p.batch ? b0 + g : b0;
    for (int c = 0; c < 6; ++c) a.r[c][g] = p.rot[b * 9 + c];
    a.base[g] = static_cast<int32_t>(g * cell_floats(d));
  }
  a.offset = static_cast<float>(d / 2 + 1);
  a.limit = static_cast<float>(d + 1);
  a.cells = d + 1;
  return a;
}

// proj[v][0][g] = A_g[0] . disp[r, v], proj[v][1][g] = A_g[1] . disp[r, v], with r the
// displacement row of image b0 + g (disp_row[b0 + g], or b0 + g itself).
inline void project_vertices(const Problem& p, int64_t b0, const Group& a,
                             float* __restrict proj) {
  const int64_t nv = p.n_vertices;
  for (int g = 0; g < G; ++g) {
    const int64_t b = b0 + g < p.batch ? b0 + g : b0;
    const int64_t row = p.disp_row != nullptr ? p.disp_row[b] : b;
    const float* __restrict d = p.disp + row * nv * 3;
    const float a0 = a.r[0][g], a1 = a.r[1][g], a2 = a.r[2][g];
    const float a3 = a.r[3][g], a4 = a.r[4][g], a5 = a.r[5][g];
    for (int64_t v = 0; v < nv; ++v) {
      const float dx = d[3 * v], dy = d[3 * v + 1], dz = d[3 * v + 2];
      proj[(2 * v) * G + g] = a0 * dx + a1 * dy + a2 * dz;
      proj[(2 * v + 1) * G + g] = a3 * dx + a4 * dy + a5 * dz;
    }
  }
}

// The 4 vertices' projected displacements of a run: P[2k] = x, P[2k + 1] = y of vertex k.
FLEXCORE_INLINE void load_run(const Problem& p, const float* __restrict proj, int64_t j,
                              vf (&P)[8]) {
  for (int k = 0; k < 4; ++k) {
    const float* __restrict pv = proj + static_cast<int64_t>(p.vidx[4 * j + k]) * 2 * G;
    P[2 * k] = load(pv);
    P[2 * k + 1] = load(pv + G);
  }
}

// Where voxel j lands in each image: the first float of its cell record (at), the fractions
// (tx, ty) and keep (all ones for kept points, 0 for rejected ones and NaN, which are sent
// to cell 0 with zero fractions so that callers stay branch-free).
template <bool DISP>
FLEXCORE_INLINE void locate(const Problem& p, const Group& a, const vf (&P)[8], int64_t j,
                            vi& at, vf& tx, vf& ty, vi& keep) {
  const float x = p.coords[3 * j], y = p.coords[3 * j + 1], z = p.coords[3 * j + 2];
  vf qx = a.r[0] * x + a.r[1] * y + a.r[2] * z + a.offset;
  vf qy = a.r[3] * x + a.r[4] * y + a.r[5] * z + a.offset;
  if (DISP) {
    const float* w = p.bary + 4 * j;
    qx += w[0] * P[0] + w[1] * P[2] + w[2] * P[4] + w[3] * P[6];
    qy += w[0] * P[1] + w[1] * P[3] + w[2] * P[5] + w[3] * P[7];
  }
  keep = (qx >= 0.f) & (qx < a.limit) & (qy >= 0.f) & (qy < a.limit);
  const vf cx = select(keep, qx), cy = select(keep, qy);
  const vi ix = __builtin_convertvector(cx, vi), iy = __builtin_convertvector(cy, vi);  // floor
  tx = cx - __builtin_convertvector(ix, vf);
  ty = cy - __builtin_convertvector(iy, vf);
  at = a.base + 4 * (iy * a.cells + ix);
}

template <bool DISP>
void forward_impl(const Problem& p, const Item& it, float* __restrict cells,
                  float* __restrict proj) {
  const int64_t b0 = it.group * G;
  const Group a = make_group(p, b0);
  if (DISP) project_vertices(p, b0, a, proj);
  alignas(32) int32_t at_s[G];
  alignas(32) float rec[G][4];
  vf P[8] = {};
  for (int64_t j0 = it.v0; j0 < it.v1;) {
    const int64_t j1 = DISP ? run_end(p.vidx, j0, it.v1) : it.v1;
    if (DISP) load_run(p, proj, j0, P);
    for (int64_t j = j0; j < j1; ++j) {
      const float dens = p.density[j];
      if (dens == 0.f) continue;
      vi at, keep;
      vf tx, ty;
      locate<DISP>(p, a, P, j, at, tx, ty, keep);
      const vf d = select(keep, splat(dens));
      const vf r1 = d * ty, r0 = d - r1;
      const vf w01 = r0 * tx, w11 = r1 * tx;
      to_records(r0 - w01, w01, r1 - w11, w11, rec);
      *reinterpret_cast<vi*>(at_s) = at;
      for (int g = 0; g < G; ++g) {  // one 4-float add per image
        v4u* q = reinterpret_cast<v4u*>(cells + at_s[g]);
        *q += *reinterpret_cast<const v4u*>(rec[g]);
      }
    }
    j0 = j1;
  }
}

// d loss / d P of a run: acc[2k] (x) and acc[2k + 1] (y) for its vertex k.
FLEXCORE_INLINE void flush(const int32_t* v, const vf (&acc)[8], float* __restrict grad_proj) {
  for (int k = 0; k < 4; ++k) {
    float* __restrict dst = grad_proj + static_cast<int64_t>(v[k]) * 2 * G;
    store(dst, load(dst) + acc[2 * k]);
    store(dst + G, load(dst + G) + acc[2 * k + 1]);
  }
}

template <bool DISP, bool GD, bool GP>
void backward_impl(const Problem& p, const Item& it, const float* __restrict gcells,
                   float* __restrict grad_density, float* __restrict grad_proj,
                   float* __restrict proj) {
  const int64_t b0 = it.group * G;
  const Group a = make_group(p, b0);
  if (DISP) project_vertices(p, b0, a, proj);
  alignas(32) int32_t at_s[G];
  vf P[8] = {};
  for (int64_t j0 = it.v0; j0 < it.v1;) {
    const int64_t j1 = DISP ? run_end(p.vidx, j0, it.v1) : it.v1;
    if (DISP) load_run(p, proj, j0, P);
    vf acc[8] = {};
    for (int64_t j = j0; j < j1; ++j) {
      vi at, keep;
      vf tx, ty;
      locate<DISP>(p, a, P, j, at, tx, ty, keep);
      *reinterpret_cast<vi*>(at_s) = at;
      vf g00, g01, g10, g11;
      from_records(gcells, at_s, g00, g01, g10, g11);
      if (GD) {
        const vf top = g00 + tx * (g01 - g00), bottom = g10 + tx * (g11 - g10);
        grad_density[j] += hsum(select(keep, top + ty * (bottom - top)));
      }
      if (GP) {
        // derivative of the bilinear weights times the gradient; zero for rejected points
        const vf d = select(keep, splat(p.density[j]));
        const vf dx0 = g01 - g00, dx1 = g11 - g10, dy0 = g10 - g00, dy1 = g11 - g01;
        const vf gx = d * (dx0 + ty * (dx1 - dx0));
        const vf gy = d * (dy0 + tx * (dy1 - dy0));
        const float* w = p.bary + 4 * j;
        for (int k = 0; k < 4; ++k) {
          acc[2 * k] += w[k] * gx;
          acc[2 * k + 1] += w[k] * gy;
        }
      }
    }
    if (GP) flush(p.vidx + 4 * j0, acc, grad_proj);
    j0 = j1;
  }
}

void forward_item(const Problem& p, const Item& it, float* cells, float* proj) {
  if (p.disp != nullptr) {
    forward_impl<true>(p, it, cells, proj);
  } else {
    forward_impl<false>(p, it, cells, proj);
  }
}

void backward_item(const Problem& p, const Item& it, const float* grad_cells,
                   float* grad_density, float* grad_proj, float* proj) {
  const bool disp = p.disp != nullptr, gd = grad_density != nullptr;
  const bool gp = disp && grad_proj != nullptr;
  if (disp && gd && gp) {
    backward_impl<true, true, true>(p, it, grad_cells, grad_density, grad_proj, proj);
  } else if (disp && gp) {
    backward_impl<true, false, true>(p, it, grad_cells, grad_density, grad_proj, proj);
  } else if (disp && gd) {
    backward_impl<true, true, false>(p, it, grad_cells, grad_density, grad_proj, proj);
  } else if (gd) {
    backward_impl<false, true, false>(p, it, grad_cells, grad_density, grad_proj, proj);
  }
}

#undef FLEXCORE_INLINE

}  // namespace FLEXCORE_CPU_ISA
