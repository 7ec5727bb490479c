// CPU kernels of the correlation-filter tracker (see tracking.h for the papers).
//
// All FFTs go through FFTW3 single precision. Plans are made once per grid size
// (FFTW_ESTIMATE: deterministic, so every tracker of one size computes bit-identical
// results), cached for the life of the process, and executed with the new-array
// functions (fftwf_execute_dft_*), which FFTW documents as thread-safe. Only the
// planner is not thread-safe: every planner call holds fftw_planner_mutex().
#include <fftw3.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <complex>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <utility>

#include "tracking/tracking.h"

namespace lanner {
namespace tracking {
namespace {

constexpr float kPi = 3.14159265358979323846f;
constexpr float kHogClip = 0.5f;          // HOG bins clipped after normalisation (feature units)
constexpr float kHogFloorGradient = 8.f;  // normalisation floor: 8 gray levels/px of gradient per cell
constexpr float kMinTargetPx = 2.f;       // scale search never shrinks a target below this (px)
constexpr float kPsrMeanRate = 0.05f;     // EMA rate of the running mean PSR (per confident frame)
constexpr float kVelocityRate = 0.3f;     // EMA rate of the centre velocity (per confident frame)
constexpr float kCoastDecay = 0.95f;      // per lost frame, the predicted motion decays by this
constexpr float kPsrReferenceCap = 2.f;   // relative PSR thresholds use at most 2 x good_psr as the mean
constexpr int kRedetectWindows = 8;       // re-detection windows per lost frame besides the prediction

using cfloat = std::complex<float>;

// fftwf_malloc'ed (SIMD-aligned) array.
template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n) { resize(n); }
  ~AlignedBuffer() { fftwf_free(ptr_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  void resize(size_t n) {
    fftwf_free(ptr_);
    ptr_ = nullptr;
    size_ = n;
    if (n == 0) return;
    ptr_ = static_cast<T*>(fftwf_malloc(sizeof(T) * n));
    if (!ptr_) throw std::bad_alloc();
    std::memset(static_cast<void*>(ptr_), 0, sizeof(T) * n);
  }
  void swap(AlignedBuffer& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(size_, other.size_);
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return ptr_[i]; }
  const T& operator[](size_t i) const { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  size_t size_ = 0;
};

std::mutex& fftw_planner_mutex() {
  static std::mutex m;
  return m;
}

// Real <-> half-complex 2-D plans for one h x w grid.
struct FftPlan {
  int h = 0, w = 0;
  fftwf_plan r2c = nullptr;
  fftwf_plan c2r = nullptr;
  int freq_size() const { return h * (w / 2 + 1); }
  void forward(const float* in, cfloat* out) const {
    fftwf_execute_dft_r2c(r2c, const_cast<float*>(in), reinterpret_cast<fftwf_complex*>(out));
  }
  // Unnormalised inverse. Destroys `in` (FFTW c2r overwrites its input).
  void inverse(cfloat* in, float* out) const { fftwf_execute_dft_c2r(c2r, reinterpret_cast<fftwf_complex*>(in), out); }
};

const FftPlan& plan_for(int h, int w) {
  static std::map<std::pair<int, int>, FftPlan> cache;  // lives for the process
  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  auto it = cache.find({h, w});
  if (it != cache.end()) return it->second;
  AlignedBuffer<float> real(static_cast<size_t>(h) * w);
  AlignedBuffer<cfloat> freq(static_cast<size_t>(h) * (w / 2 + 1));
  FftPlan p;
  p.h = h;
  p.w = w;
  auto* f = reinterpret_cast<fftwf_complex*>(freq.data());
  // FFTW_UNALIGNED: the plans are executed on channel slices of larger buffers and
  // on NumPy memory, whose alignment may differ from the planning arrays'.
  const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
  p.r2c = fftwf_plan_dft_r2c_2d(h, w, real.data(), f, flags);
  p.c2r = fftwf_plan_dft_c2r_2d(h, w, f, real.data(), flags);
  if (!p.r2c || !p.c2r) throw std::runtime_error("FFTW could not create a plan");
  return cache.emplace(std::make_pair(h, w), p).first->second;
}

// atan(z) for |z| <= 1, max error ~1e-5 rad (Abramowitz & Stegun 4.4.49 form).
inline float atan_unit(float z) {
  const float z2 = z * z;
  return z * (0.9998660f + z2 * (-0.3302995f + z2 * (0.1801410f + z2 * (-0.0851330f + z2 * 0.0208351f))));
}

// Unsigned gradient orientation in [0, pi); 0 for a flat pixel. Branch-free (selects
// only), so that loops calling it vectorise.
inline float orientation(float dy, float dx) {
  const float ax = std::fabs(dx), ay = std::fabs(dy);
  // num / den <= 1; both 0 (flat) gives 0 / FLT_MIN = 0.
  const float num = std::min(ax, ay), den = std::max(std::max(ax, ay), FLT_MIN);
  const float t = atan_unit(num / den);
  float a = ay > ax ? 0.5f * kPi - t : t;    // [0, pi/2]
  a = ((dx < 0) != (dy < 0)) ? kPi - a : a;  // 2nd/4th quadrant
  return a >= kPi ? a - kPi : a;
}

// Label: Gaussian peak at (0, 0), wrapped (KCF), std `sigma` cells.
void gaussian_label(int h, int w, float sigma, float* y) {
  for (int i = 0; i < h; ++i) {
    const int di = i <= h / 2 ? i : i - h;
    for (int j = 0; j < w; ++j) {
      const int dj = j <= w / 2 ? j : j - w;
      y[i * w + j] = std::exp(-0.5f * static_cast<float>(di * di + dj * dj) / (sigma * sigma));
    }
  }
}

void hann_window(int h, int w, float* win) {
  auto hann = [](int i, int n) {
    return n <= 1 ? 1.f : 0.5f * (1.f - std::cos(2.f * kPi * static_cast<float>(i) / static_cast<float>(n - 1)));
  };
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < w; ++j) win[i * w + j] = hann(i, h) * hann(j, w);
}

// ||x||^2 from a half spectrum (Parseval): interior columns stand for two.
float energy_from_half_spectrum(const cfloat* xf, int h, int w) {
  const int wf = w / 2 + 1;
  double s = 0;
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < wf; ++j) {
      const bool single = j == 0 || (w % 2 == 0 && j == w / 2);
      s += (single ? 1.0 : 2.0) * std::norm(xf[i * wf + j]);
    }
  return static_cast<float>(s / (static_cast<double>(h) * w));
}

// Kernel correlation k(z, x) returned as a half spectrum `kf`. zf/xf are c stacked
// half spectra; zz/xx their energies. Scratch: `acc` (freq size), `k` (h*w).
void kernel_correlation(const FftPlan& plan, const cfloat* zf, const cfloat* xf, float zz, float xx, int c,
                        bool gaussian, float sigma, cfloat* acc, float* k, cfloat* kf) {
  const int nf = plan.freq_size();
  const int n = plan.h * plan.w;
  for (int i = 0; i < nf; ++i) acc[i] = 0;
  for (int l = 0; l < c; ++l) {
    const cfloat* a = zf + static_cast<size_t>(l) * nf;
    const cfloat* b = xf + static_cast<size_t>(l) * nf;
    for (int i = 0; i < nf; ++i) acc[i] += a[i] * std::conj(b[i]);
  }
  const float numel = static_cast<float>(n) * c;
  if (!gaussian) {
    for (int i = 0; i < nf; ++i) kf[i] = acc[i] / numel;
    return;
  }
  plan.inverse(acc, k);
  const float inv_n = 1.f / static_cast<float>(n);
  for (int i = 0; i < n; ++i) {
    const float d = std::max(0.f, (zz + xx - 2.f * k[i] * inv_n) / numel);
    k[i] = std::exp(-d / (sigma * sigma));
  }
  plan.forward(k, kf);
}

}  // namespace

// ---------------------------------------------------------------------------
// Building blocks

// An AVX2 clone next to the baseline one, picked at load time (no FMA contraction: the
// same floats on both).
__attribute__((target_clones("avx2", "default"))) void extract_features(const float* planes, int rows, int cols,
                                                                        int cell, float* out) {
  const int gh = (rows - 2) / cell, gw = (cols - 2) / cell;
  const int ncell = gh * gw;
  const int span = gw * cell;  // pixels per row that fall in cells
  const size_t plane = static_cast<size_t>(rows) * cols;
  const float* gray = planes;
  std::fill(out, out + static_cast<size_t>(kChannels) * ncell, 0.f);
  float* hist = out;                                          // bins 0..8: channel-major
  float* mean = out + static_cast<size_t>(kHogBins) * ncell;  // channel 9; 10, 11: colour
  std::vector<float> w0(span), w1(span), cell_hist(static_cast<size_t>(ncell) * kHogBins, 0.f);
  std::vector<int> bin0(span), bin1(span);
  const float bin_per_rad = kHogBins / kPi;
  for (int y = 1; y <= gh * cell; ++y) {
    const float* row = gray + static_cast<size_t>(y) * cols;
    const float* up = row - cols;
    const float* down = row + cols;
    // Gradient magnitude, orientation and bin votes of the row (branch-free: vectorises).
    for (int i = 0; i < span; ++i) {
      const int x = i + 1;
      const float dx = row[x + 1] - row[x - 1];
      const float dy = down[x] - up[x];
      const float mag = std::sqrt(dx * dx + dy * dy);
      // Bin centres at (b + 0.5) * pi / 9; the magnitude is split between the two
      // nearest centres (circularly), so the feature is continuous in the angle.
      const float pos = orientation(dy, dx) * bin_per_rad - 0.5f;  // [-0.5, 8.5)
      const int trunc = static_cast<int>(pos);
      const int lo = trunc - (pos < static_cast<float>(trunc) ? 1 : 0);  // floor
      const float frac = pos - static_cast<float>(lo);
      bin0[i] = lo < 0 ? lo + kHogBins : lo;
      bin1[i] = lo + 1 == kHogBins ? 0 : lo + 1;
      w0[i] = mag * (1.f - frac);
      w1[i] = mag * frac;
    }
    // Votes into the cell-major histograms (the 9 bins of a cell side by side).
    const int cy = (y - 1) / cell;
    float* hist_row = cell_hist.data() + static_cast<size_t>(cy) * gw * kHogBins;
    for (int i = 0; i < span; ++i) {
      float* h = hist_row + (i / cell) * kHogBins;
      h[bin0[i]] += w0[i];
      h[bin1[i]] += w1[i];
    }
    const float* o1 = planes + plane + static_cast<size_t>(y) * cols;
    const float* o2 = planes + 2 * plane + static_cast<size_t>(y) * cols;
    float* m0 = mean + static_cast<size_t>(cy) * gw;
    float* m1 = m0 + ncell;
    float* m2 = m1 + ncell;
    for (int k = 0; k < cell; ++k)
      for (int c = 0; c < gw; ++c) {
        const int x = c * cell + k + 1;
        m0[c] += row[x];
        m1[c] += o1[x];
        m2[c] += o2[x];
      }
  }
  for (int ci = 0; ci < ncell; ++ci)
    for (int b = 0; b < kHogBins; ++b)
      hist[static_cast<size_t>(b) * ncell + ci] = cell_hist[static_cast<size_t>(ci) * kHogBins + b];
  // Energy per cell, then each cell divided by the RMS energy of its 3x3 neighbourhood.
  std::vector<float> energy(ncell, 0.f);
  for (int b = 0; b < kHogBins; ++b)
    for (int i = 0; i < ncell; ++i)
      energy[i] += hist[static_cast<size_t>(b) * ncell + i] * hist[static_cast<size_t>(b) * ncell + i];
  const float floor_energy = std::pow(kHogFloorGradient * cell * cell, 2.f);
  for (int cy = 0; cy < gh; ++cy)
    for (int cx = 0; cx < gw; ++cx) {
      float s = 0;
      int cnt = 0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = cy + dy, xx = cx + dx;
          if (yy < 0 || yy >= gh || xx < 0 || xx >= gw) continue;
          s += energy[yy * gw + xx];
          ++cnt;
        }
      const float inv = 1.f / std::sqrt(s / static_cast<float>(cnt) + floor_energy);
      const int ci = cy * gw + cx;
      for (int b = 0; b < kHogBins; ++b) {
        float& v = hist[static_cast<size_t>(b) * ncell + ci];
        v = std::min(v * inv, kHogClip);
      }
      const float inv_area = 1.f / static_cast<float>(cell * cell);
      mean[ci] = mean[ci] * inv_area / 255.f - 0.5f;
      mean[ncell + ci] *= inv_area;
      mean[2 * ncell + ci] *= inv_area;
    }
}

float peak_to_sidelobe(const float* response, int h, int w, int exclude) {
  int peak = 0;
  for (int i = 1; i < h * w; ++i)
    if (response[i] > response[peak]) peak = i;
  const int py = peak / w, px = peak % w;
  double s = 0, s2 = 0;
  int n = 0;
  for (int i = 0; i < h; ++i) {
    int dy = std::abs(i - py);
    dy = std::min(dy, h - dy);
    for (int j = 0; j < w; ++j) {
      int dx = std::abs(j - px);
      dx = std::min(dx, w - dx);
      if (dy <= exclude && dx <= exclude) continue;
      const double v = response[i * w + j];
      s += v;
      s2 += v * v;
      ++n;
    }
  }
  if (n < 2) return 0.f;
  const double mean = s / n;
  const double var = std::max(0.0, s2 / n - mean * mean);
  return static_cast<float>((response[peak] - mean) / (std::sqrt(var) + 1e-6));
}

void kcf_response(const float* z, const float* x, const float* alpha, int c, int h, int w, bool gaussian, float sigma,
                  float* response) {
  const FftPlan& plan = plan_for(h, w);
  const int n = h * w, nf = plan.freq_size();
  AlignedBuffer<float> real(n);
  AlignedBuffer<cfloat> zf(static_cast<size_t>(c) * nf), xf(static_cast<size_t>(c) * nf);
  AlignedBuffer<cfloat> acc(nf), kf(nf), alphaf(nf);
  float zz = 0, xx = 0;
  for (int l = 0; l < c; ++l) {
    std::copy(z + static_cast<size_t>(l) * n, z + static_cast<size_t>(l + 1) * n, real.data());
    for (int i = 0; i < n; ++i) zz += real[i] * real[i];
    plan.forward(real.data(), zf.data() + static_cast<size_t>(l) * nf);
    std::copy(x + static_cast<size_t>(l) * n, x + static_cast<size_t>(l + 1) * n, real.data());
    for (int i = 0; i < n; ++i) xx += real[i] * real[i];
    plan.forward(real.data(), xf.data() + static_cast<size_t>(l) * nf);
  }
  std::copy(alpha, alpha + n, real.data());
  plan.forward(real.data(), alphaf.data());
  kernel_correlation(plan, zf.data(), xf.data(), zz, xx, c, gaussian, sigma, acc.data(), real.data(), kf.data());
  for (int i = 0; i < nf; ++i) acc[i] = alphaf[i] * kf[i];
  plan.inverse(acc.data(), response);
  for (int i = 0; i < n; ++i) response[i] /= static_cast<float>(n);
}

// ---------------------------------------------------------------------------
// The tracker

struct CorrelationTracker::Impl {
  TrackerParams p;
  bool gaussian = true;
  bool ready = false;

  int frame_h = 0, frame_w = 0;
  // Target: centre (px), size at scale 1 (px), current scale factor.
  float cx = 0, cy = 0, base_w = 0, base_h = 0, scale = 1;
  // Window (px at scale 1) resampled onto a template of grid * cell px.
  float window_w = 0, window_h = 0;
  int cell = 4, grid_h = 0, grid_w = 0, patch_rows = 0, patch_cols = 0;
  int psr_exclude = 1;  // cells around the peak left out of the sidelobe
  const FftPlan* plan = nullptr;

  std::vector<float> cos_window, scale_factors;
  AlignedBuffer<cfloat> yf, model_xf, model_alphaf;
  float model_xx = 0;
  // The model saved on the last very confident frame (snapshot_ratio): appearance
  // learned just before an occlusion (partly occluded frames) does not reach it.
  AlignedBuffer<cfloat> snap_xf, snap_alphaf;
  float snap_xx = 0;
  bool has_snapshot = false;
  float psr_mean = 0;   // running mean PSR of confident frames
  float peak_mean = 0;  // running mean response peak of confident frames (0 = none yet)
  int misses = 0;
  bool lost = false;
  int lost_frames = 0;
  std::vector<std::pair<int, int>> redetect_offsets;  // re-detection windows, ring by ring
  int redetect_cursor = 0;
  float vx = 0, vy = 0;  // centre velocity (px/frame), EMA over confident frames

  // Scratch, reused every frame (sizes fixed at init).
  std::vector<float> patch, feat, region, col_wt, row_wt;
  std::vector<int> col_lo, col_hi, row_lo, row_hi;
  AlignedBuffer<float> real, k, response, best_response, windowed;
  AlignedBuffer<cfloat> zf, acc, kf;

  int n() const { return grid_h * grid_w; }
  int nf() const { return plan->freq_size(); }

  void configure(const FrameView& frame, const Box& box) {
    frame_h = frame.height;
    frame_w = frame.width;
    cx = box.x + 0.5f * box.w;
    cy = box.y + 0.5f * box.h;
    base_w = box.w;
    base_h = box.h;
    scale = 1;
    window_w = base_w * (1 + p.padding);
    window_h = base_h * (1 + p.padding);
    cell = p.cell_size > 0 ? p.cell_size : (std::max(base_w, base_h) < 24.f ? 2 : 4);
    // Grid side (geometric mean, cells): the window at native resolution, clamped to
    // [min_grid, max_grid]: tiny targets are upsampled, large ones downsampled.
    const float native = std::sqrt(window_w * window_h) / static_cast<float>(cell);
    const float side = std::clamp(native, static_cast<float>(p.min_grid), static_cast<float>(p.max_grid));
    const float aspect = std::sqrt(window_w / window_h);
    // Even sizes keep the label's wrap symmetric; at least 8 cells per side.
    auto even = [](float v) { return std::max(8, 2 * static_cast<int>(std::lround(v / 2.f))); };
    grid_w = even(side * aspect);
    grid_h = even(side / aspect);
    patch_cols = grid_w * cell + 2;
    patch_rows = grid_h * cell + 2;
    const float target_cells = std::sqrt(base_w * base_h) * (grid_w * cell / window_w) / cell;
    psr_exclude = std::max(1, static_cast<int>(std::lround(0.5f * target_cells)));
    psr_exclude = std::min(psr_exclude, std::min(grid_h, grid_w) / 2 - 2);
    psr_exclude = std::max(psr_exclude, 1);
    plan = &plan_for(grid_h, grid_w);

    cos_window.assign(n(), 0.f);
    hann_window(grid_h, grid_w, cos_window.data());
    // A window sharper than Hann (power > 1) weighs the target over its background:
    // a cheap stand-in for the spatial regularisation of SRDCF/BACF on small targets.
    if (p.window_power != 1.f)
      for (float& v : cos_window) v = std::pow(v, p.window_power);
    // Re-detection offsets (in steps of redetect_spread windows), ring 1 first.
    const int rings =
        std::max(1, static_cast<int>(std::floor(p.redetect_radius / std::max(p.redetect_spread, 1e-6f) + 1e-4f)));
    redetect_offsets.clear();
    for (int ring = 1; ring <= rings; ++ring)
      for (int oy = -ring; oy <= ring; ++oy)
        for (int ox = -ring; ox <= ring; ++ox)
          if (std::max(std::abs(ox), std::abs(oy)) == ring) redetect_offsets.emplace_back(ox, oy);
    scale_factors.clear();
    for (int s = 0; s < p.num_scales; ++s)
      scale_factors.push_back(std::pow(p.scale_step, static_cast<float>(s - (p.num_scales - 1) / 2)));

    patch.assign(static_cast<size_t>(kPlanes) * patch_rows * patch_cols, 0.f);
    feat.assign(static_cast<size_t>(kChannels) * n(), 0.f);
    windowed.resize(static_cast<size_t>(kChannels) * n());
    real.resize(n());
    k.resize(n());
    response.resize(n());
    best_response.resize(n());
    zf.resize(static_cast<size_t>(kChannels) * nf());
    acc.resize(nf());
    kf.resize(nf());
    yf.resize(nf());
    model_xf.resize(static_cast<size_t>(kChannels) * nf());
    model_alphaf.resize(nf());
    snap_xf.resize(static_cast<size_t>(kChannels) * nf());
    snap_alphaf.resize(nf());
    has_snapshot = false;
    const float sigma = std::max(0.25f, target_cells * p.output_sigma_factor);
    gaussian_label(grid_h, grid_w, sigma, real.data());
    plan->forward(real.data(), yf.data());
  }

  // Bilinear resample of the window centred at (x0, y0), `zoom` x the scale-1 size,
  // onto the patch planes (with their one pixel border); edge pixels replicate.
  // The taps of each column and row are computed once per window. Without shared
  // frame planes (a single Tracker) only the frame rectangle the taps touch is
  // converted, once: the same pixel_planes() values, so results are bit-identical.
  void sample(const FrameView& frame, const float* planes, float x0, float y0, float zoom) {
    const float sx = window_w * zoom / static_cast<float>(grid_w * cell);
    const float sy = window_h * zoom / static_cast<float>(grid_h * cell);
    const int fw = frame.width, fh = frame.height, ch = frame.channels;
    auto taps = [](float origin, float step, int count, int limit, std::vector<int>& lo, std::vector<int>& hi,
                   std::vector<float>& wt) {
      lo.resize(count);
      hi.resize(count);
      wt.resize(count);
      for (int i = 0; i < count; ++i) {
        float f = origin + (static_cast<float>(i - 1) - 0.5f * (count - 2) + 0.5f) * step - 0.5f;
        f = std::clamp(f, 0.f, static_cast<float>(limit - 1));
        lo[i] = std::min(static_cast<int>(f), limit - 1);
        hi[i] = std::min(lo[i] + 1, limit - 1);
        wt[i] = f - static_cast<float>(lo[i]);
      }
    };
    taps(x0, sx, patch_cols, fw, col_lo, col_hi, col_wt);
    taps(y0, sy, patch_rows, fh, row_lo, row_hi, row_wt);
    // Taps are monotonic: the first low and the last high tap bound the rectangle.
    const int rx0 = col_lo.front(), rx1 = col_hi.back(), ry0 = row_lo.front(), ry1 = row_hi.back();
    const float* src;
    size_t stride, src_plane;
    int ox = 0, oy = 0;
    if (planes) {
      src = planes;
      stride = static_cast<size_t>(fw);
      src_plane = static_cast<size_t>(fw) * fh;
    } else {
      const int rw = rx1 - rx0 + 1, rh = ry1 - ry0 + 1;
      stride = static_cast<size_t>(rw);
      src_plane = static_cast<size_t>(rw) * rh;
      region.resize(kPlanes * src_plane);
      float v[kPlanes];
      for (int y = ry0; y <= ry1; ++y) {
        const uint8_t* px = frame.data + (static_cast<size_t>(y) * fw + rx0) * ch;
        const size_t o = static_cast<size_t>(y - ry0) * rw;
        for (int x = 0; x < rw; ++x, px += ch) {
          pixel_planes(px, ch, v);
          for (int q = 0; q < kPlanes; ++q) region[q * src_plane + o + x] = v[q];
        }
      }
      src = region.data();
      ox = rx0;
      oy = ry0;
    }
    for (int c = 0; c < patch_cols; ++c) {
      col_lo[c] -= ox;
      col_hi[c] -= ox;
    }
    const size_t patch_plane = static_cast<size_t>(patch_rows) * patch_cols;
    for (int q = 0; q < kPlanes; ++q) {
      const float* base = src + q * src_plane;
      for (int r = 0; r < patch_rows; ++r) {
        const float* top = base + static_cast<size_t>(row_lo[r] - oy) * stride;
        const float* bottom = base + static_cast<size_t>(row_hi[r] - oy) * stride;
        const float wy = row_wt[r];
        float* out = patch.data() + q * patch_plane + static_cast<size_t>(r) * patch_cols;
        for (int c = 0; c < patch_cols; ++c) {
          const float wx = col_wt[c];
          const float t = top[col_lo[c]] * (1 - wx) + top[col_hi[c]] * wx;
          const float b = bottom[col_lo[c]] * (1 - wx) + bottom[col_hi[c]] * wx;
          out[c] = t * (1 - wy) + b * wy;
        }
      }
    }
  }

  // Features of the window at (x0, y0, zoom) times the cosine window, into `out`
  // (kChannels x h x w).
  void windowed_features(const FrameView& frame, const float* planes, float x0, float y0, float zoom, float* out) {
    sample(frame, planes, x0, y0, zoom);
    extract_features(patch.data(), patch_rows, patch_cols, cell, feat.data());
    for (int l = 0; l < kChannels; ++l)
      for (int i = 0; i < n(); ++i)
        out[static_cast<size_t>(l) * n() + i] = feat[static_cast<size_t>(l) * n() + i] * cos_window[i];
  }

  // Windowed features of the window at (x0, y0, zoom) into `zf` (spectra); returns ||x||^2.
  float features_spectrum(const FrameView& frame, const float* planes, float x0, float y0, float zoom) {
    windowed_features(frame, planes, x0, y0, zoom, windowed.data());
    float energy = 0;
    for (int l = 0; l < kChannels; ++l) {
      const float* f = windowed.data() + static_cast<size_t>(l) * n();
      for (int i = 0; i < n(); ++i) energy += f[i] * f[i];
      plan->forward(f, zf.data() + static_cast<size_t>(l) * nf());
    }
    return energy;
  }

  // Detection response at (x0, y0, zoom) into `response`.
  void detect(const FrameView& frame, const float* planes, float x0, float y0, float zoom) {
    const float zz = features_spectrum(frame, planes, x0, y0, zoom);
    kernel_correlation(*plan, zf.data(), model_xf.data(), zz, model_xx, kChannels, gaussian, p.kernel_sigma, acc.data(),
                       k.data(), kf.data());
    for (int i = 0; i < nf(); ++i) acc[i] = model_alphaf[i] * kf[i];
    plan->inverse(acc.data(), response.data());
    const float inv = 1.f / static_cast<float>(n());
    for (int i = 0; i < n(); ++i) response[i] *= inv;
  }

  // Train on the window at the current state; rate 1 replaces the model.
  void learn(const FrameView& frame, const float* planes, float rate) {
    const float xx = features_spectrum(frame, planes, cx, cy, scale);
    kernel_correlation(*plan, zf.data(), zf.data(), xx, xx, kChannels, gaussian, p.kernel_sigma, acc.data(), k.data(),
                       kf.data());
    const size_t total = static_cast<size_t>(kChannels) * nf();
    for (size_t i = 0; i < total; ++i) model_xf[i] = (1 - rate) * model_xf[i] + rate * zf[i];
    for (int i = 0; i < nf(); ++i) {
      const cfloat alphaf = yf[i] / (kf[i] + p.lambda);
      model_alphaf[i] = (1 - rate) * model_alphaf[i] + rate * alphaf;
    }
    model_xx = energy_from_half_spectrum(model_xf.data(), grid_h, grid_w);
    for (int l = 1; l < kChannels; ++l)
      model_xx += energy_from_half_spectrum(model_xf.data() + static_cast<size_t>(l) * nf(), grid_h, grid_w);
  }

  // Peak of `r` with sub-pixel (parabolic) refinement, as a cyclic displacement in cells.
  void peak(const float* r, float& peak_value, float& dy, float& dx) const {
    int best = 0;
    for (int i = 1; i < n(); ++i)
      if (r[i] > r[best]) best = i;
    const int py = best / grid_w, px = best % grid_w;
    peak_value = r[best];
    auto refine = [](float lo, float mid, float hi) {
      const float den = lo - 2 * mid + hi;
      if (!(den < 0)) return 0.f;
      return std::clamp(0.5f * (lo - hi) / den, -0.5f, 0.5f);
    };
    const float oy =
        refine(r[((py - 1 + grid_h) % grid_h) * grid_w + px], r[best], r[((py + 1) % grid_h) * grid_w + px]);
    const float ox = refine(r[py * grid_w + (px - 1 + grid_w) % grid_w], r[best], r[py * grid_w + (px + 1) % grid_w]);
    dy = static_cast<float>(py > grid_h / 2 ? py - grid_h : py) + oy;
    dx = static_cast<float>(px > grid_w / 2 ? px - grid_w : px) + ox;
  }

  void move_by_cells(float dy, float dx, float zoom) {
    cx += dx * cell * window_w * zoom / static_cast<float>(grid_w * cell);
    cy += dy * cell * window_h * zoom / static_cast<float>(grid_h * cell);
    cx = std::clamp(cx, 0.f, static_cast<float>(frame_w));
    cy = std::clamp(cy, 0.f, static_cast<float>(frame_h));
  }

  Box box() const {
    const float w = base_w * scale, h = base_h * scale;
    return {cx - 0.5f * w, cy - 0.5f * h, w, h};
  }

  void init(const FrameView& frame, const float* planes, const Box& b) {
    configure(frame, b);
    misses = 0;
    lost = false;
    lost_frames = 0;
    vx = vy = 0;
    peak_mean = 0;
    psr_mean = p.good_psr;  // neutral start: the first frames after init score unrealistically high
    learn(frame, planes, 1.f);
    if (p.snapshot_ratio > 0) save_snapshot();
    ready = true;
  }

  // The search windows of a tracked (not lost) target for a batched detection step:
  // for each scale, the windowed features z (kChannels x h x w), and the model x
  // (kChannels x h x w) and alpha (h x w) in the spatial domain.
  void search_windows(const FrameView& frame, const float* planes, float* z, float* x, float* alpha) {
    const size_t stack = static_cast<size_t>(kChannels) * n();
    for (size_t s = 0; s < scale_factors.size(); ++s)
      windowed_features(frame, planes, cx, cy, scale * scale_factors[s], z + s * stack);
    // The model's spectra back to space (c2r destroys its input: copies).
    const float inv = 1.f / static_cast<float>(n());
    for (int l = 0; l < kChannels; ++l) {
      std::copy(model_xf.data() + static_cast<size_t>(l) * nf(), model_xf.data() + static_cast<size_t>(l + 1) * nf(),
                acc.data());
      plan->inverse(acc.data(), x + static_cast<size_t>(l) * n());
      for (int i = 0; i < n(); ++i) x[static_cast<size_t>(l) * n() + i] *= inv;
    }
    std::copy(model_alphaf.data(), model_alphaf.data() + nf(), acc.data());
    plan->inverse(acc.data(), alpha);
    for (int i = 0; i < n(); ++i) alpha[i] *= inv;
  }

  // One frame: follow the target while it is tracked, search for it while it is lost.
  // `responses`: precomputed detection responses (one h x w map per scale, as
  // search_windows() ordered them), or null: computed here (the single-target path).
  TrackState update(const FrameView& frame, const float* planes, const float* responses = nullptr) {
    TrackState st = lost ? redetect(frame, planes) : track(frame, planes, responses);
    st.lost = lost;
    st.box = box();
    return st;
  }

  // -- tracking: a multi-scale search around the last position -------------------------

  struct ScalePeak {
    float value = -1e30f;  // response peak (times scale_penalty off scale 1)
    float dy = 0, dx = 0;  // its displacement, cells
    float zoom = 1;        // window zoom it was found at
  };

  TrackState track(const FrameView& frame, const float* planes, const float* responses) {
    TrackState st;
    const ScalePeak best = search_scales(frame, planes, responses);
    st.score = peak_to_sidelobe(best_response.data(), grid_h, grid_w, psr_exclude);
    const bool miss = is_miss(st.score, best.value);
    // On a miss follow only `miss_motion` of the peak's displacement (a weak peak may
    // be right for a fast, blurred target, or an occluder); only confident frames
    // change the scale and the model.
    const float follow = miss ? p.miss_motion : 1.f;
    const float px = cx, py = cy;
    move_by_cells(follow * best.dy, follow * best.dx, miss ? scale : best.zoom);
    if (miss)
      count_miss();
    else
      confirm(frame, planes, best, px, py, st.score);
    return st;
  }

  // The best peak over the scales; its response is left in best_response.
  ScalePeak search_scales(const FrameView& frame, const float* planes, const float* responses) {
    ScalePeak best;
    best.zoom = scale;
    for (size_t s = 0; s < scale_factors.size(); ++s) {
      const float f = scale_factors[s];
      const float zoom = scale * f;
      if (responses)
        std::copy(responses + s * n(), responses + (s + 1) * n(), response.data());
      else
        detect(frame, planes, cx, cy, zoom);
      float pv, dy, dx;
      peak(response.data(), pv, dy, dx);
      if (f != 1.f) pv *= p.scale_penalty;
      if (pv > best.value) {
        best = {pv, dy, dx, zoom};
        response.swap(best_response);
      }
    }
    return best;
  }

  // A miss: the PSR falls below its threshold, or the peak itself collapses against its
  // running mean (LMCF's second cue: occluders and clutter can keep a moderate PSR while
  // the peak value drops).
  bool is_miss(float psr, float peak_value) const {
    return psr < miss_threshold() || (peak_mean > 0 && peak_value < p.peak_ratio * peak_mean);
  }

  // A confident frame: velocity, scale, model, snapshot and running means move on.
  // (px, py): the centre before this frame's move.
  void confirm(const FrameView& frame, const float* planes, const ScalePeak& best, float px, float py, float psr) {
    vx = (1 - kVelocityRate) * vx + kVelocityRate * (cx - px);
    vy = (1 - kVelocityRate) * vy + kVelocityRate * (cy - py);
    const float max_scale = std::max(static_cast<float>(frame_w) / base_w, static_cast<float>(frame_h) / base_h);
    const float min_scale = kMinTargetPx / std::min(base_w, base_h);
    scale = std::clamp(best.zoom, std::min(min_scale, 1.f), std::max(max_scale, 1.f));
    misses = 0;
    learn(frame, planes, confident_rate(psr));
    if (p.snapshot_ratio > 0 && psr >= p.snapshot_ratio * reference_psr()) save_snapshot();
    psr_mean = (1 - kPsrMeanRate) * psr_mean + kPsrMeanRate * psr;
    peak_mean = peak_mean == 0 ? best.value : (1 - kPsrMeanRate) * peak_mean + kPsrMeanRate * best.value;
  }

  // lost_patience misses in a row: freeze the model, search wider from the next frame.
  void count_miss() {
    if (++misses < p.lost_patience) return;
    lost = true;
    lost_frames = 0;
    redetect_cursor = 0;
    if (has_snapshot) restore_snapshot();
  }

  // -- re-detection: the predicted window and windows around it ------------------------

  struct Candidate {
    float psr = -1e30f, peak = 0;  // PSR and peak of the best window's response
    float dy = 0, dx = 0;          // the peak's displacement in that window, cells
    float x = 0, y = 0;            // that window's centre, px
  };

  TrackState redetect(const FrameView& frame, const float* planes) {
    TrackState st;
    coast();
    const Candidate best = search_around(frame, planes);
    st.score = best.psr;
    // Re-acquired: a sharp peak (PSR) that is also as strong as the target's usual
    // peak (recover_peak_ratio): clutter can give a sharp but weak peak.
    const bool strong = p.recover_peak_ratio == 0 || best.peak >= p.recover_peak_ratio * peak_mean;
    if (best.psr >= std::max(p.recover_psr, p.recover_ratio * reference_psr()) && strong) {
      cx = best.x;
      cy = best.y;
      move_by_cells(best.dy, best.dx, scale);
      lost = false;
      misses = 0;
      st.recovered = true;
      learn(frame, planes, confident_rate(best.psr));
    }
    return st;
  }

  // The prediction coasts on the last velocity, decaying (an occluded target usually
  // keeps moving).
  void coast() {
    ++lost_frames;
    const float decay = std::pow(kCoastDecay, static_cast<float>(lost_frames));
    cx = std::clamp(cx + decay * vx, 0.f, static_cast<float>(frame_w));
    cy = std::clamp(cy + decay * vy, 0.f, static_cast<float>(frame_h));
  }

  // The predicted window, then kRedetectWindows offsets taken in turn from the rings around
  // it (ring 1 = the 8 neighbours at +-redetect_spread windows; redetect_radius adds outer
  // rings, searched over successive frames at the same cost per frame). Wider spacing of
  // the windows was tried: it leaves holes.
  Candidate search_around(const FrameView& frame, const float* planes) {
    Candidate best;
    best.x = cx;
    best.y = cy;
    const float step_x = p.redetect_spread * window_w * scale;
    const float step_y = p.redetect_spread * window_h * scale;
    auto search = [&](int ox, int oy) {
      const float x0 = std::clamp(cx + ox * step_x, 0.f, static_cast<float>(frame_w));
      const float y0 = std::clamp(cy + oy * step_y, 0.f, static_cast<float>(frame_h));
      detect(frame, planes, x0, y0, scale);
      const float psr = peak_to_sidelobe(response.data(), grid_h, grid_w, psr_exclude);
      if (psr > best.psr) {
        best.psr = psr;
        peak(response.data(), best.peak, best.dy, best.dx);
        best.x = x0;
        best.y = y0;
      }
    };
    search(0, 0);
    const int count = static_cast<int>(redetect_offsets.size());
    for (int i = 0; i < std::min(kRedetectWindows, count); ++i) {
      const auto& o = redetect_offsets[(redetect_cursor + i) % count];
      search(o.first, o.second);
    }
    redetect_cursor = (redetect_cursor + kRedetectWindows) % std::max(count, 1);
    return best;
  }

  void save_snapshot() {
    std::copy(model_xf.data(), model_xf.data() + model_xf.size(), snap_xf.data());
    std::copy(model_alphaf.data(), model_alphaf.data() + model_alphaf.size(), snap_alphaf.data());
    snap_xx = model_xx;
    has_snapshot = true;
  }
  void restore_snapshot() {
    std::copy(snap_xf.data(), snap_xf.data() + snap_xf.size(), model_xf.data());
    std::copy(snap_alphaf.data(), snap_alphaf.data() + snap_alphaf.size(), model_alphaf.data());
    model_xx = snap_xx;
  }

  // The mean PSR the relative thresholds use, capped: a very clean target (PSR 50+)
  // must not turn ordinary dips into misses.
  float reference_psr() const { return std::min(psr_mean, kPsrReferenceCap * p.good_psr); }
  float miss_threshold() const { return std::max(p.lost_psr, p.miss_ratio * reference_psr()); }

  // Learning rate scaled by confidence: 0 at the miss threshold, full at good_psr.
  float confident_rate(float psr) const {
    const float lo = miss_threshold();
    const float hi = std::max({p.good_psr, lo + 1.f});
    return p.learning_rate * std::clamp((psr - lo) / (hi - lo), 0.f, 1.f);
  }
};

CorrelationTracker::CorrelationTracker(const TrackerParams& params) : impl_(std::make_unique<Impl>()) {
  validate_params(params);
  impl_->p = params;
  impl_->gaussian = params.kernel == "gaussian";
}
CorrelationTracker::~CorrelationTracker() = default;

void CorrelationTracker::init(const FrameView& frame, const float* planes, const Box& box) {
  impl_->init(frame, planes, box);
}

TrackState CorrelationTracker::update(const FrameView& frame, const float* planes) {
  return impl_->update(frame, planes);
}

bool CorrelationTracker::searching() const {
  return impl_->ready && !impl_->lost;
}
int CorrelationTracker::search_count() const {
  return static_cast<int>(impl_->scale_factors.size());
}
int CorrelationTracker::grid_height() const {
  return impl_->grid_h;
}
int CorrelationTracker::grid_width() const {
  return impl_->grid_w;
}

void CorrelationTracker::search_windows(const FrameView& frame, const float* planes, float* z, float* x, float* alpha) {
  impl_->search_windows(frame, planes, z, x, alpha);
}

TrackState CorrelationTracker::update_from_responses(const FrameView& frame, const float* planes,
                                                     const float* responses) {
  return impl_->update(frame, planes, responses);
}

bool CorrelationTracker::initialized() const {
  return impl_->ready;
}

double CorrelationTracker::sampled_pixels() const {
  const Impl& m = *impl_;
  if (!m.ready) return 0;
  const double zoom = m.scale * (m.scale_factors.empty() ? 1.0 : m.scale_factors.back());
  const double windows = m.lost ? 1 + kRedetectWindows + 1 : static_cast<double>(m.scale_factors.size()) + 1;
  return windows * (m.window_w * zoom + 2) * (m.window_h * zoom + 2);
}

}  // namespace tracking
}  // namespace lanner
