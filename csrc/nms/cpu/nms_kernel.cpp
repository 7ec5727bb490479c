// CPU NMS kernels: greedy hard NMS (class-agnostic and per-class) and Soft-NMS.
//
// Greedy NMS keeps a box iff no higher-ranked *kept* box overlaps it by more
// than the threshold. We therefore test each candidate (in rank order) against
// the kept boxes only, and find those through a uniform grid over the image:
// a kept box is filed under every cell it covers, and a candidate looks only
// in the cells it covers. Two boxes that share a region of positive area share
// a cell (cell indices are monotone in the coordinates), and any overlap above
// a threshold in [0, 1] needs a positive-area intersection, so the grid misses
// nothing. The cost is O(N log N) for the sort plus O(N x kept boxes nearby),
// instead of the O(N x kept) of the textbook loop (OpenCV's NMSBoxes).
//
// Boxes much larger than a cell would be filed many times: they go to a short
// list that every candidate scans, and large candidates scan all kept boxes
// (structure-of-arrays, a branch-free loop the compiler vectorises).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "nms/nms.h"

namespace lanner {
namespace {

// Below this many candidates the grid costs more than it saves.
constexpr size_t kGridMinCandidates = 128;
// A box covering more than this many grid cells is "large" (see above).
constexpr int64_t kLargeBoxCells = 16;
// Kept boxes are scanned in blocks of this many before testing for a hit:
// long enough to vectorise, short enough to exit early.
constexpr size_t kScanBlock = 16;

// Sort key: score descending, then index ascending, packed in one integer so
// that std::sort is deterministic and compares cheaply. Scores are finite;
// -0.0 is folded into +0.0 so that it ties with it, like the float comparison.
inline uint64_t rank_key(float score, int32_t index) {
  score += 0.0f;  // -0.0 -> +0.0
  uint32_t bits;
  std::memcpy(&bits, &score, sizeof bits);
  // Map float order onto unsigned order, then invert for "descending".
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~bits) << 32) | static_cast<uint32_t>(index);
}

// Candidates in rank order, structure-of-arrays, coordinates as double.
struct Candidates {
  std::vector<double> x1, y1, x2, y2, area;
  std::vector<int32_t> index;  // original row

  void reserve(size_t m) {
    for (auto* v : {&x1, &y1, &x2, &y2, &area}) v->reserve(m);
    index.reserve(m);
  }
  void push(const float* boxes, int32_t i) {
    const double a = boxes[4 * i], b = boxes[4 * i + 1], c = boxes[4 * i + 2], d = boxes[4 * i + 3];
    x1.push_back(a);
    y1.push_back(b);
    x2.push_back(c);
    y2.push_back(d);
    area.push_back(box_area(a, b, c, d));
    index.push_back(i);
  }
  size_t size() const { return index.size(); }
};

// Kept boxes, structure-of-arrays, for the linear scans.
struct KeptBoxes {
  std::vector<double> x1, y1, x2, y2, area;

  void push(const Candidates& c, size_t k) {
    x1.push_back(c.x1[k]);
    y1.push_back(c.y1[k]);
    x2.push_back(c.x2[k]);
    y2.push_back(c.y2[k]);
    area.push_back(c.area[k]);
  }
  size_t size() const { return x1.size(); }

  // True when any kept box overlaps candidate k by more than thr.
  template <OverlapMode M>
  bool any_exceeds(const Candidates& c, size_t k, double thr) const {
    const double bx1 = c.x1[k], by1 = c.y1[k], bx2 = c.x2[k], by2 = c.y2[k], barea = c.area[k];
    const size_t n = size();
    for (size_t start = 0; start < n; start += kScanBlock) {
      const size_t stop = std::min(n, start + kScanBlock);
      bool hit = false;
      for (size_t j = start; j < stop; ++j) {
        hit |= box_overlap(x1[j], y1[j], x2[j], y2[j], area[j], bx1, by1, bx2, by2, barea, M) > thr;
      }
      if (hit) return true;
    }
    return false;
  }
};

// Uniform grid of kept boxes (see the file comment).
class KeptGrid {
 public:
  // Sizes the grid from the positive-area candidates [begin, end).
  KeptGrid(const Candidates& c, size_t begin, size_t end) {
    double min_x = INFINITY, min_y = INFINITY, max_x = -INFINITY, max_y = -INFINITY;
    std::vector<double> sizes;
    sizes.reserve(end - begin);
    for (size_t k = begin; k < end; ++k) {
      if (!(c.area[k] > 0.0)) continue;
      min_x = std::min(min_x, c.x1[k]);
      min_y = std::min(min_y, c.y1[k]);
      max_x = std::max(max_x, c.x2[k]);
      max_y = std::max(max_y, c.y2[k]);
      sizes.push_back(std::max(c.x2[k] - c.x1[k], c.y2[k] - c.y1[k]));
    }
    if (sizes.empty()) return;  // nothing can overlap anything
    // Cell side: the 75th percentile of box sides, so a typical box covers at
    // most 2 x 2 cells; grown if needed to keep the cell count near 2 per box.
    auto q = sizes.begin() + static_cast<std::ptrdiff_t>(sizes.size() * 3 / 4);
    std::nth_element(sizes.begin(), q, sizes.end());
    const double extent_x = max_x - min_x, extent_y = max_y - min_y;
    const double max_cells = std::max<double>(64.0, 2.0 * static_cast<double>(sizes.size()));
    double cell = std::max(*q, std::sqrt(extent_x * extent_y / max_cells));
    cell = std::max({cell, extent_x / max_cells, extent_y / max_cells});
    origin_x_ = min_x;
    origin_y_ = min_y;
    inv_cell_ = 1.0 / cell;
    nx_ = std::min<int64_t>(static_cast<int64_t>(max_cells), static_cast<int64_t>(extent_x * inv_cell_) + 1);
    ny_ = std::min<int64_t>(static_cast<int64_t>(max_cells), static_cast<int64_t>(extent_y * inv_cell_) + 1);
    nx_ = std::max<int64_t>(nx_, 1);
    ny_ = std::max<int64_t>(ny_, 1);
    head_.assign(static_cast<size_t>(nx_ * ny_), -1);
    tail_.assign(static_cast<size_t>(nx_ * ny_), -1);
  }

  bool usable() const { return !head_.empty(); }

  struct Span {
    int64_t cx0, cy0, cx1, cy1;
    int64_t cells() const { return (cx1 - cx0 + 1) * (cy1 - cy0 + 1); }
  };

  Span span(const Candidates& c, size_t k) const {
    return {cell_of(c.x1[k], origin_x_, nx_), cell_of(c.y1[k], origin_y_, ny_), cell_of(c.x2[k], origin_x_, nx_),
            cell_of(c.y2[k], origin_y_, ny_)};
  }

  // True when a kept box filed in the cells of `s` overlaps candidate k by more than thr.
  template <OverlapMode M>
  bool any_exceeds(const Candidates& c, size_t k, const Span& s, double thr) const {
    const double bx1 = c.x1[k], by1 = c.y1[k], bx2 = c.x2[k], by2 = c.y2[k], barea = c.area[k];
    for (int64_t cy = s.cy0; cy <= s.cy1; ++cy) {
      for (int64_t cx = s.cx0; cx <= s.cx1; ++cx) {
        for (int32_t e = head_[static_cast<size_t>(cy * nx_ + cx)]; e >= 0; e = entries_[e].next) {
          const Entry& q = entries_[e];
          if (box_overlap(q.x1, q.y1, q.x2, q.y2, q.area, bx1, by1, bx2, by2, barea, M) > thr) return true;
        }
      }
    }
    return false;
  }

  // Files kept candidate k under every cell of `s` (in insertion order, so
  // the highest-ranked kept box of a cell, the likeliest suppressor, comes first).
  void insert(const Candidates& c, size_t k, const Span& s) {
    for (int64_t cy = s.cy0; cy <= s.cy1; ++cy) {
      for (int64_t cx = s.cx0; cx <= s.cx1; ++cx) {
        const size_t cell = static_cast<size_t>(cy * nx_ + cx);
        const auto e = static_cast<int32_t>(entries_.size());
        entries_.push_back({c.x1[k], c.y1[k], c.x2[k], c.y2[k], c.area[k], -1});
        if (tail_[cell] >= 0) {
          entries_[tail_[cell]].next = e;
        } else {
          head_[cell] = e;
        }
        tail_[cell] = e;
      }
    }
  }

 private:
  struct Entry {
    double x1, y1, x2, y2, area;
    int32_t next;  // next entry of the same cell, -1 at the end
  };

  // Monotone in v, clamped to [0, n - 1]; computed in double so that no
  // finite float32 coordinate can overflow the integer conversion.
  int64_t cell_of(double v, double origin, int64_t n) const {
    double f = std::floor((v - origin) * inv_cell_);
    f = std::min(std::max(f, 0.0), static_cast<double>(n - 1));
    return static_cast<int64_t>(f);
  }

  double origin_x_ = 0.0, origin_y_ = 0.0, inv_cell_ = 1.0;
  int64_t nx_ = 0, ny_ = 0;
  std::vector<int32_t> head_, tail_;
  std::vector<Entry> entries_;
};

// Greedy NMS over candidates [begin, end) (rank order). Appends the positions
// (into `c`) of kept candidates to `kept`, at most `limit` of them.
template <OverlapMode M>
void greedy_nms(const Candidates& c, size_t begin, size_t end, double thr, size_t limit, std::vector<size_t>& kept) {
  size_t n_kept = 0;
  KeptBoxes all_kept;  // every kept positive-area box (linear-scan path)
  if (end - begin < kGridMinCandidates) {
    for (size_t k = begin; k < end && n_kept < limit; ++k) {
      if (c.area[k] > 0.0) {
        if (all_kept.any_exceeds<M>(c, k, thr)) continue;
        all_kept.push(c, k);
      }
      kept.push_back(k);
      ++n_kept;
    }
    return;
  }
  KeptGrid grid(c, begin, end);
  KeptBoxes large_kept;  // kept boxes too large to file in the grid
  for (size_t k = begin; k < end && n_kept < limit; ++k) {
    if (c.area[k] > 0.0) {  // zero-area boxes overlap nothing: always kept
      const KeptGrid::Span s = grid.span(c, k);
      const bool large = s.cells() > kLargeBoxCells;
      if (large) {
        if (all_kept.any_exceeds<M>(c, k, thr)) continue;
      } else {
        if (grid.any_exceeds<M>(c, k, s, thr) || large_kept.any_exceeds<M>(c, k, thr)) continue;
      }
      all_kept.push(c, k);
      if (large) {
        large_kept.push(c, k);
      } else {
        grid.insert(c, k, s);
      }
    }
    kept.push_back(k);
    ++n_kept;
  }
}

void greedy_nms_dispatch(const Candidates& c, size_t begin, size_t end, const NmsParams& p, size_t limit,
                         std::vector<size_t>& kept) {
  if (p.mode == OverlapMode::kMin) {
    greedy_nms<OverlapMode::kMin>(c, begin, end, p.iou_threshold, limit, kept);
  } else {
    greedy_nms<OverlapMode::kUnion>(c, begin, end, p.iou_threshold, limit, kept);
  }
}

// Rows passing the score threshold, in rank order.
std::vector<int32_t> ranked_rows(const BoxesView& in, std::optional<double> score_threshold) {
  std::vector<uint64_t> keys;
  keys.reserve(static_cast<size_t>(in.n));
  for (int64_t i = 0; i < in.n; ++i) {
    if (score_threshold && !(static_cast<double>(in.scores[i]) > *score_threshold)) continue;
    keys.push_back(rank_key(in.scores[i], static_cast<int32_t>(i)));
  }
  std::sort(keys.begin(), keys.end());
  std::vector<int32_t> rows(keys.size());
  for (size_t k = 0; k < keys.size(); ++k) rows[k] = static_cast<int32_t>(keys[k] & 0xffffffffu);
  return rows;
}

}  // namespace

std::vector<int64_t> nms_cpu(const BoxesView& in, const NmsParams& p) {
  std::vector<int32_t> rows = ranked_rows(in, p.score_threshold);
  const size_t limit = p.max_output ? static_cast<size_t>(*p.max_output) : rows.size();
  std::vector<size_t> segments{0, rows.size()};  // [begin, end) per class
  if (in.class_ids != nullptr) {
    // Group by class, keeping rank order inside each class.
    std::stable_sort(rows.begin(), rows.end(),
                     [&](int32_t a, int32_t b) { return in.class_ids[a] < in.class_ids[b]; });
    segments.assign(1, 0);
    for (size_t k = 1; k < rows.size(); ++k) {
      if (in.class_ids[rows[k]] != in.class_ids[rows[k - 1]]) segments.push_back(k);
    }
    segments.push_back(rows.size());
  }
  Candidates c;
  c.reserve(rows.size());
  for (int32_t r : rows) c.push(in.boxes, r);

  std::vector<size_t> kept;
  for (size_t s = 0; s + 1 < segments.size(); ++s) greedy_nms_dispatch(c, segments[s], segments[s + 1], p, limit, kept);

  std::vector<int64_t> out;
  out.reserve(kept.size());
  for (size_t k : kept) out.push_back(c.index[k]);
  if (in.class_ids != nullptr) {
    // Classes were processed one after the other: restore the global rank order.
    std::vector<uint64_t> keys;
    keys.reserve(out.size());
    for (int64_t i : out) keys.push_back(rank_key(in.scores[i], static_cast<int32_t>(i)));
    std::sort(keys.begin(), keys.end());
    if (keys.size() > limit) keys.resize(limit);
    out.resize(keys.size());
    for (size_t k = 0; k < keys.size(); ++k) out[k] = static_cast<int64_t>(keys[k] & 0xffffffffu);
  }
  return out;
}

// Soft-NMS (Bodla et al., ICCV 2017, Algorithm 1): repeatedly select the box
// with the highest current score and decay the scores of the boxes that
// overlap it; drop boxes whose score falls to score_threshold or below.
// O(N x selected).
SoftNmsResult soft_nms_cpu(const BoxesView& in, const SoftNmsParams& p) {
  struct Live {
    double x1, y1, x2, y2, area, score;
    int32_t index;
  };
  std::vector<Live> live;
  live.reserve(static_cast<size_t>(in.n));
  for (int64_t i = 0; i < in.n; ++i) {
    const double score = in.scores[i];
    if (!(score > p.score_threshold)) continue;
    const float* b = in.boxes + 4 * i;
    live.push_back({b[0], b[1], b[2], b[3], box_area(b[0], b[1], b[2], b[3]), score, static_cast<int32_t>(i)});
  }
  SoftNmsResult result;
  while (!live.empty()) {
    size_t best = 0;
    for (size_t k = 1; k < live.size(); ++k) {
      if (live[k].score > live[best].score || (live[k].score == live[best].score && live[k].index < live[best].index)) {
        best = k;
      }
    }
    const Live sel = live[best];
    result.indices.push_back(sel.index);
    result.scores.push_back(static_cast<float>(sel.score));
    live[best] = live.back();
    live.pop_back();
    size_t w = 0;
    for (size_t k = 0; k < live.size(); ++k) {
      Live b = live[k];
      const double iou =
          box_overlap(sel.x1, sel.y1, sel.x2, sel.y2, sel.area, b.x1, b.y1, b.x2, b.y2, b.area, OverlapMode::kUnion);
      if (iou > 0.0) {
        if (p.method == SoftNmsMethod::kGaussian) {
          b.score *= std::exp(-mul_rn(iou, iou) / p.sigma);
        } else if (iou > p.iou_threshold) {
          b.score *= 1.0 - iou;
        }
        if (!(b.score > p.score_threshold)) continue;
      }
      live[w++] = b;
    }
    live.resize(w);
  }
  return result;
}

}  // namespace lanner
