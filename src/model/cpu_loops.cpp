#include "src/model/cpu_loops.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CNNVIZ_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CNNVIZ_VECTOR_CLONES
#endif
#if defined(__GNUC__)
#define CNNVIZ_INLINE inline __attribute__((always_inline))
#else
#define CNNVIZ_INLINE inline
#endif

// Every function taking or returning the vector types below is inlined: their calling convention does not
// matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace cnnviz::detail {
namespace {

constexpr int64_t kMaxKernel = 16;

// The output columns one input column's taps reach: (offset into the transposed weight, offset into an
// output row), for each input column; and whether the next columns of the same phase (x + stride, ...)
// have the same taps, each one output column further on.
struct ColumnTaps {
  std::vector<int64_t> begin;  // width + 1 entries into weight / out
  std::vector<int64_t> weight;
  std::vector<int64_t> out;
  std::vector<char> same_as_next;  // column x + stride has column x's taps, shifted by one output column
};

ColumnTaps TapsOfColumns(const ConvShape& s) {
  ColumnTaps taps;
  taps.begin.push_back(0);
  for (int64_t x = 0; x < s.width; ++x) {
    for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
      const int64_t at = x + s.pad_w - kx;
      if (at < 0 || at % s.stride_w != 0 || at / s.stride_w >= s.out_width) continue;
      taps.weight.push_back(kx * s.in_channels * s.out_channels);
      taps.out.push_back(at / s.stride_w * s.out_channels);
    }
    taps.begin.push_back(static_cast<int64_t>(taps.weight.size()));
  }
  taps.same_as_next.assign(s.width, 0);
  for (int64_t x = 0; x + s.stride_w < s.width; ++x) {
    const int64_t next = x + s.stride_w;
    bool same = taps.begin[x + 1] - taps.begin[x] == taps.begin[next + 1] - taps.begin[next];
    for (int64_t t = 0; same && t < taps.begin[x + 1] - taps.begin[x]; ++t) {
      same = taps.weight[taps.begin[x] + t] == taps.weight[taps.begin[next] + t] &&
             taps.out[taps.begin[x] + t] + s.out_channels == taps.out[taps.begin[next] + t];
    }
    taps.same_as_next[x] = same;
  }
  return taps;
}

// Sixteen floats: one AVX-512 register, two AVX2 ones, four SSE ones (GCC's vector extension lowers it to
// what each clone has). Variables of this type stay in registers, where a float array would not.
typedef float Vec16 __attribute__((vector_size(64)));
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));

CNNVIZ_INLINE Vec16 Load(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

CNNVIZ_INLINE float Sum(const Vec16& v) {
  const Vec8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                 __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const Vec4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// P columns of one phase (x, x + stride, ...) with the same taps at once: P * C * O / 16 independent
// accumulators in registers, so that the sums over taps do not wait on each other. Returns the sums.
template <int C, int O, int P>
CNNVIZ_INLINE void Columns(const ColumnTaps& taps, int64_t x, const float* const* rows,
                           const float* const* row_weights, int rows_used, float sums[P][C]) {
  constexpr int V = O / 16;
  Vec16 acc[P][C][V];
#pragma GCC unroll 64
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 64
    for (int c = 0; c < C; ++c) {
#pragma GCC unroll 64
      for (int v = 0; v < V; ++v) acc[p][c][v] = Vec16{};
    }
  }
  for (int r = 0; r < rows_used; ++r) {
    for (int64_t t = taps.begin[x]; t < taps.begin[x + 1]; ++t) {
      const float* g = rows[r] + taps.out[t];
      const float* w = row_weights[r] + taps.weight[t];
#pragma GCC unroll 64
      for (int v = 0; v < V; ++v) {
        Vec16 grads[P];
#pragma GCC unroll 64
        for (int p = 0; p < P; ++p) grads[p] = Load(g + p * O + v * 16);
#pragma GCC unroll 64
        for (int c = 0; c < C; ++c) {
          const Vec16 weight = Load(w + c * O + v * 16);
#pragma GCC unroll 64
          for (int p = 0; p < P; ++p) acc[p][c][v] += grads[p] * weight;
        }
      }
    }
  }
#pragma GCC unroll 64
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 64
    for (int c = 0; c < C; ++c) {
      Vec16 total = acc[p][c][0];
#pragma GCC unroll 64
      for (int v = 1; v < V; ++v) total += acc[p][c][v];
      sums[p][c] = Sum(total);
    }
  }
}

template <int C, int O>
CNNVIZ_INLINE void Gradient(const ConvShape& s, const ColumnTaps& taps, const float* grad_out, const float* weight_t,
                            float* grad_in, int64_t begin, int64_t end) {
  // P * C * O / 16 accumulators (24 for 3 channels) and P loaded gradients: AVX-512's 32 registers.
  // Measured on 4 images of 140x140, 1 thread: P = 8 against 4 columns at a time, 0.63 ms against 0.78 ms
  // for the bundled model's conv1; P = 2 against 1, 4.4 ms against 4.8 ms for resnet18's.
  constexpr int P = 128 / O;
  const int64_t row_stride = s.out_width * O;
  for (int64_t n = begin; n < end; ++n) {
    for (int64_t y = 0; y < s.height; ++y) {
      const float* rows[kMaxKernel];
      const float* row_weights[kMaxKernel];
      int rows_used = 0;
      for (int64_t ky = 0; ky < s.kernel_h; ++ky) {
        const int64_t at = y + s.pad_h - ky;
        if (at < 0 || at % s.stride_h != 0 || at / s.stride_h >= s.out_height) continue;
        rows[rows_used] = grad_out + (n * s.out_height + at / s.stride_h) * row_stride;
        row_weights[rows_used] = weight_t + ky * s.kernel_w * C * O;
        ++rows_used;
      }
      float* out = grad_in + (n * s.height + y) * s.width * C;
      for (int64_t phase = 0; phase < std::min(s.stride_w, s.width); ++phase) {
        int64_t x = phase;
        while (x < s.width) {
          bool group = P > 1;
          for (int p = 0; group && p + 1 < P; ++p) {
            group = x + p * s.stride_w < s.width && taps.same_as_next[x + p * s.stride_w];
          }
          if (group) {
            float sums[P][C];
            Columns<C, O, P>(taps, x, rows, row_weights, rows_used, sums);
            for (int p = 0; p < P; ++p) {
              for (int c = 0; c < C; ++c) out[(x + p * s.stride_w) * C + c] = sums[p][c];
            }
            x += P * s.stride_w;
          } else {
            float sums[1][C];
            Columns<C, O, 1>(taps, x, rows, row_weights, rows_used, sums);
            for (int c = 0; c < C; ++c) out[x * C + c] = sums[0][c];
            x += s.stride_w;
          }
        }
      }
    }
  }
}

#define CNNVIZ_GRADIENT(C, O)                                                                                   \
  CNNVIZ_VECTOR_CLONES void Gradient##C##x##O(const ConvShape& s, const ColumnTaps& taps, const float* grad_out, \
                                              const float* weight_t, float* grad_in, int64_t begin, int64_t end) { \
    Gradient<C, O>(s, taps, grad_out, weight_t, grad_in, begin, end);                                          \
  }
CNNVIZ_GRADIENT(1, 16)
CNNVIZ_GRADIENT(1, 32)
CNNVIZ_GRADIENT(1, 64)
CNNVIZ_GRADIENT(1, 128)
CNNVIZ_GRADIENT(3, 16)
CNNVIZ_GRADIENT(3, 32)
CNNVIZ_GRADIENT(3, 64)
CNNVIZ_GRADIENT(3, 128)
#undef CNNVIZ_GRADIENT

using GradientLoop = void (*)(const ConvShape&, const ColumnTaps&, const float*, const float*, float*, int64_t,
                              int64_t);

GradientLoop LoopFor(int64_t in_channels, int64_t out_channels) {
  struct Entry {
    int64_t c, o;
    GradientLoop loop;
  };
  static const Entry kLoops[] = {{1, 16, Gradient1x16},   {1, 32, Gradient1x32},
                                 {1, 64, Gradient1x64}, {1, 128, Gradient1x128},
                                 {3, 16, Gradient3x16}, {3, 32, Gradient3x32},   {3, 64, Gradient3x64},
                                 {3, 128, Gradient3x128}};
  for (const Entry& entry : kLoops) {
    if (entry.c == in_channels && entry.o == out_channels) return entry.loop;
  }
  return nullptr;
}

// ATen's max pooling keeps a later value when it is larger or NaN.
CNNVIZ_INLINE float Later(float value, float best) { return (value > best || value != value) ? value : best; }

// One window's gradient for `channels` channels: without NaN, the first position holding the maximum
// takes it, if the maximum is above 0 (selects only, so the loop vectorizes); a window whose maximum is
// NaN (nothing matched it) gives it to its last NaN.
CNNVIZ_INLINE void WindowGradient(const float* __restrict a, const float* __restrict b, const float* __restrict c,
                                  const float* __restrict d, const float* __restrict best_of,
                                  const float* __restrict grad_out, float* __restrict ga, float* __restrict gb,
                                  float* __restrict gc, float* __restrict gd, int64_t channels) {
  for (int64_t k = 0; k < channels; ++k) {
    const float best = best_of[k];
    float left = best > 0.0f ? grad_out[k] : 0.0f;
    ga[k] = a[k] == best ? left : 0.0f;
    left = a[k] == best ? 0.0f : left;
    gb[k] = b[k] == best ? left : 0.0f;
    left = b[k] == best ? 0.0f : left;
    gc[k] = c[k] == best ? left : 0.0f;
    left = c[k] == best ? 0.0f : left;
    gd[k] = d[k] == best ? left : 0.0f;
  }
  int nans = 0;
  for (int64_t k = 0; k < channels; ++k) nans += best_of[k] != best_of[k];
  if (nans == 0) return;
  for (int64_t k = 0; k < channels; ++k) {
    if (best_of[k] == best_of[k]) continue;
    float* taker = d[k] != d[k] ? gd : c[k] != c[k] ? gc : b[k] != b[k] ? gb : ga;
    taker[k] = grad_out[k];
  }
}

CNNVIZ_INLINE void ReluMaxPoolRows(const float* x, int64_t height, int64_t width, int64_t channels, float* out,
                                          int64_t begin, int64_t end) {
  const int64_t out_h = height / 2, out_w = width / 2;
  for (int64_t n = begin; n < end; ++n) {
    for (int64_t i = 0; i < out_h; ++i) {
      for (int64_t j = 0; j < out_w; ++j) {
        const float* a = x + ((n * height + 2 * i) * width + 2 * j) * channels;
        const float* b = a + channels;
        const float* c = a + width * channels;
        const float* d = c + channels;
        float* o = out + ((n * out_h + i) * out_w + j) * channels;
        for (int64_t k = 0; k < channels; ++k) {
          const float best = Later(d[k], Later(c[k], Later(b[k], a[k])));
          o[k] = (best > 0.0f || best != best) ? best : 0.0f;
        }
      }
    }
  }
}

CNNVIZ_INLINE void ReluMaxPoolBackwardRows(const float* x, const float* out, const float* grad_out,
                                                  int64_t height, int64_t width, int64_t channels, float* grad_in,
                                                  int64_t begin, int64_t end) {
  const int64_t out_h = height / 2, out_w = width / 2;
  for (int64_t n = begin; n < end; ++n) {
    float* image = grad_in + n * height * width * channels;
    if (height % 2) std::memset(image + (height - 1) * width * channels, 0, sizeof(float) * width * channels);
    for (int64_t i = 0; i < out_h; ++i) {
      for (int64_t j = 0; j < out_w; ++j) {
        const int64_t at = ((n * height + 2 * i) * width + 2 * j) * channels;
        const float* a = x + at;
        const float* b = a + channels;
        const float* c = a + width * channels;
        const float* d = c + channels;
        float* ga = grad_in + at;
        float* gb = ga + channels;
        float* gc = ga + width * channels;
        float* gd = gc + channels;
        const int64_t o = ((n * out_h + i) * out_w + j) * channels;
        WindowGradient(a, b, c, d, out + o, grad_out + o, ga, gb, gc, gd, channels);
      }
      if (width % 2) {
        for (int64_t row : {2 * i, 2 * i + 1}) {
          std::memset(image + (row * width + width - 1) * channels, 0, sizeof(float) * channels);
        }
      }
    }
  }
}

// The taps of output position (y, x) that fall inside the input, as [first, last) kernel rows and columns.
struct TapRange {
  int64_t ky0, ky1, kx0, kx1;
};

CNNVIZ_INLINE TapRange TapsOf(const ConvShape& s, int64_t y, int64_t x) {
  const int64_t top = y * s.stride_h - s.pad_h, left = x * s.stride_w - s.pad_w;
  return {std::max<int64_t>(0, -top), std::min(s.kernel_h, s.height - top), std::max<int64_t>(0, -left),
          std::min(s.kernel_w, s.width - left)};
}

}  // namespace

CNNVIZ_VECTOR_CLONES void SelectedConv(const ConvShape& s, const float* x, const float* weights, const float* bias,
                                       float* out, int64_t begin, int64_t end) {
  const int64_t channels = s.in_channels;
  for (int64_t n = begin; n < end; ++n) {
    const float* image = x + n * s.height * s.width * channels;
    const float* weight = weights + n * s.kernel_h * s.kernel_w * channels;
    for (int64_t y = 0; y < s.out_height; ++y) {
      for (int64_t xo = 0; xo < s.out_width; ++xo) {
        const TapRange taps = TapsOf(s, y, xo);
        Vec16 acc0{}, acc1{};
        float tail = 0.0f;
        for (int64_t ky = taps.ky0; ky < taps.ky1; ++ky) {
          for (int64_t kx = taps.kx0; kx < taps.kx1; ++kx) {
            const float* p =
                image + ((y * s.stride_h - s.pad_h + ky) * s.width + xo * s.stride_w - s.pad_w + kx) * channels;
            const float* w = weight + (ky * s.kernel_w + kx) * channels;
            int64_t c = 0;
            for (; c + 32 <= channels; c += 32) {
              acc0 += Load(p + c) * Load(w + c);
              acc1 += Load(p + c + 16) * Load(w + c + 16);
            }
            for (; c < channels; ++c) tail += p[c] * w[c];
          }
        }
        out[(n * s.out_height + y) * s.out_width + xo] = Sum(acc0 + acc1) + tail + (bias ? bias[n] : 0.0f);
      }
    }
  }
}

CNNVIZ_VECTOR_CLONES void SelectedConvInputGradient(const ConvShape& s, const float* grad_out, const float* weights,
                                                    float* grad_in, int64_t begin, int64_t end) {
  const int64_t channels = s.in_channels;
  for (int64_t n = begin; n < end; ++n) {
    float* image = grad_in + n * s.height * s.width * channels;
    std::memset(image, 0, sizeof(float) * s.height * s.width * channels);
    const float* weight = weights + n * s.kernel_h * s.kernel_w * channels;
    for (int64_t y = 0; y < s.out_height; ++y) {
      for (int64_t xo = 0; xo < s.out_width; ++xo) {
        const float g = grad_out[(n * s.out_height + y) * s.out_width + xo];
        if (g == 0.0f) continue;  // most positions, behind a ReLU
        const TapRange taps = TapsOf(s, y, xo);
        for (int64_t ky = taps.ky0; ky < taps.ky1; ++ky) {
          for (int64_t kx = taps.kx0; kx < taps.kx1; ++kx) {
            float* p = image + ((y * s.stride_h - s.pad_h + ky) * s.width + xo * s.stride_w - s.pad_w + kx) * channels;
            const float* w = weight + (ky * s.kernel_w + kx) * channels;
            for (int64_t c = 0; c < channels; ++c) p[c] += g * w[c];
          }
        }
      }
    }
  }
}

CNNVIZ_VECTOR_CLONES void ReluMaxPool2x2(const float* x, int64_t height, int64_t width, int64_t channels, float* out,
                                          int64_t begin, int64_t end) {
  ReluMaxPoolRows(x, height, width, channels, out, begin, end);
}

CNNVIZ_VECTOR_CLONES void ReluMaxPool2x2Backward(const float* x, const float* out, const float* grad_out, int64_t height,
                                                  int64_t width, int64_t channels, float* grad_in, int64_t begin,
                                                  int64_t end) {
  ReluMaxPoolBackwardRows(x, out, grad_out, height, width, channels, grad_in, begin, end);
}

bool ConvInputGradientSupported(const ConvShape& shape) {
  return shape.kernel_h <= kMaxKernel && shape.stride_h > 0 && shape.stride_w > 0 &&
         LoopFor(shape.in_channels, shape.out_channels) != nullptr;
}

bool ConvInputGradient(const ConvShape& shape, const float* grad_out, const float* weight_t, float* grad_in,
                       int64_t begin, int64_t end) {
  if (!ConvInputGradientSupported(shape)) return false;
  LoopFor(shape.in_channels, shape.out_channels)(shape, TapsOfColumns(shape), grad_out, weight_t, grad_in, begin,
                                                 end);
  return true;
}

}  // namespace cnnviz::detail
