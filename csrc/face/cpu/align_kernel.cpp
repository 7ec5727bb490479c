// The CPU kernels of face alignment: the similarity fit and the supersampling factor (see align.h).
#include <algorithm>
#include <cmath>

#include "face/align.h"

namespace lanner::face {

void fit_similarity(const double* points, const double* dst, double m[6]) {
  double mx = 0, my = 0, dx = 0, dy = 0;
  for (int i = 0; i < kLandmarks; ++i) {
    mx += points[2 * i];
    my += points[2 * i + 1];
    dx += dst[2 * i];
    dy += dst[2 * i + 1];
  }
  mx /= kLandmarks;
  my /= kLandmarks;
  dx /= kLandmarks;
  dy /= kLandmarks;
  double dot = 0, cross = 0, norm = 0;
  for (int i = 0; i < kLandmarks; ++i) {
    const double x = points[2 * i] - mx, y = points[2 * i + 1] - my;
    const double qx = dst[2 * i] - dx, qy = dst[2 * i + 1] - dy;
    dot += x * qx + y * qy;
    cross += x * qy - y * qx;
    norm += x * x + y * y;
  }
  const double a = dot / norm, b = cross / norm;
  m[0] = a;
  m[1] = -b;
  m[2] = dx - (a * mx - b * my);
  m[3] = b;
  m[4] = a;
  m[5] = dy - (b * mx + a * my);
}

int supersampling(const double m[6]) {
  const double scale = std::hypot(m[0], m[3]);
  return static_cast<int>(std::clamp(std::ceil(1.0 / scale - 0.01), 1.0, 1e9));
}

}  // namespace lanner::face
