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
// Grid cell side as a fraction of the median box side (a typical box covers
// about 3 x 3 cells), and the most cells per candidate box.
constexpr double kCellPerMedianSide = 0.5;
constexpr double kCellsPerBox = 4.0;
// A box covering more than this many grid cells is "large" (see above).
constexpr int64_t kLargeBoxCells = 64;
// From this many rows on, radix sort beats std::sort.
constexpr size_t kRadixSortMinRows = 1024;
// Kept boxes are scanned in blocks of this many before testing for a hit:
// long enough to vectorise, short enough to exit early.
constexpr size_t kScanBlock = 16;

// Sort key of a score: unsigned order == descending score order. Scores are
// finite; -0.0 is folded into +0.0 so that the two tie, like the float compare.
inline uint32_t descending_key(float score) {
  score += 0.0f;  // -0.0 -> +0.0
  uint32_t bits;
  std::memcpy(&bits, &score, sizeof bits);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);  // float order -> unsigned order
  return ~bits;
}

// Rank key: score descending, then index ascending, in one integer.
inline uint64_t rank_key(float score, int32_t index) {
  return (static_cast<uint64_t>(descending_key(score)) << 32) | static_cast<uint32_t>(index);
}

// Sorts rows (given in ascending index order) by descending_key, stably, so
// equal scores keep the lower index first. LSD radix sort, 3 passes of 11
// bits, skipping passes whose digit is the same for every key.
void radix_sort_rows(std::vector<uint32_t>& keys, std::vector<int32_t>& rows) {
  constexpr int kBits = 11, kPasses = 3;
  constexpr uint32_t kBuckets = 1u << kBits;
  const size_t n = keys.size();
  std::vector<uint32_t> hist(kPasses * kBuckets, 0);
  for (uint32_t k : keys) {
    for (int p = 0; p < kPasses; ++p) ++hist[p * kBuckets + ((k >> (p * kBits)) & (kBuckets - 1))];
  }
  std::vector<uint32_t> keys_out(n);
  std::vector<int32_t> rows_out(n);
  for (int p = 0; p < kPasses; ++p) {
    uint32_t* h = hist.data() + p * kBuckets;
    if (std::find(h, h + kBuckets, static_cast<uint32_t>(n)) != h + kBuckets) continue;  // one digit only
    uint32_t sum = 0;
    for (uint32_t b = 0; b < kBuckets; ++b) {
      const uint32_t count = h[b];
      h[b] = sum;
      sum += count;
    }
    const int shift = p * kBits;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t pos = h[(keys[i] >> shift) & (kBuckets - 1)]++;
      keys_out[pos] = keys[i];
      rows_out[pos] = rows[i];
    }
    keys.swap(keys_out);
    rows.swap(rows_out);
  }
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
    // Cell side: a fraction of the median box side, so that a typical box
    // covers a few cells and a query meets few kept boxes that cannot overlap
    // it; grown if needed to keep the cell count near kCellsPerBox per box.
    auto q = sizes.begin() + static_cast<std::ptrdiff_t>(sizes.size() / 2);
    std::nth_element(sizes.begin(), q, sizes.end());
    const double extent_x = max_x - min_x, extent_y = max_y - min_y;
    const double max_cells = std::max<double>(64.0, kCellsPerBox * static_cast<double>(sizes.size()));
    double cell = std::max(*q * kCellPerMedianSide, std::sqrt(extent_x * extent_y / max_cells));
    cell = std::max({cell, extent_x / max_cells, extent_y / max_cells});
    origin_x_ = min_x;
    origin_y_ = min_y;
    inv_cell_ = 1.0 / cell;
    nx_ = std::min<int64_t>(static_cast<int64_t>(max_cells), static_cast<int64_t>(extent_x * inv_cell_) + 1);
    ny_ = std::min<int64_t>(static_cast<int64_t>(max_cells), static_cast<int64_t>(extent_y * inv_cell_) + 1);
    nx_ = std::max<int64_t>(nx_, 1);
    ny_ = std::max<int64_t>(ny_, 1);
    cells_.resize(static_cast<size_t>(nx_ * ny_));
  }

  bool usable() const { return !cells_.empty(); }

  struct Span {
    int64_t cx0, cy0, cx1, cy1;
    int64_t cells() const { return (cx1 - cx0 + 1) * (cy1 - cy0 + 1); }
  };

  Span span(const Candidates& c, size_t k) const {
    return {cell_of(c.x1[k], origin_x_, nx_), cell_of(c.y1[k], origin_y_, ny_), cell_of(c.x2[k], origin_x_, nx_),
            cell_of(c.y2[k], origin_y_, ny_)};
  }

  // True when a kept box filed in the cells of `s` overlaps candidate k by
  // more than thr. The cell under the candidate's centre is searched first: a
  // box that overlaps it enough to suppress it almost always covers it.
  template <OverlapMode M>
  bool any_exceeds(const Candidates& c, size_t k, const Span& s, double thr) {
    const double bx1 = c.x1[k], by1 = c.y1[k], bx2 = c.x2[k], by2 = c.y2[k], barea = c.area[k];
    const auto fx1 = static_cast<float>(bx1), fy1 = static_cast<float>(by1), fx2 = static_cast<float>(bx2),
               fy2 = static_cast<float>(by2);  // exact: the coordinates are float32
    const int64_t ccx = cell_of(0.5 * (bx1 + bx2), origin_x_, nx_), ccy = cell_of(0.5 * (by1 + by2), origin_y_, ny_);
    ++query_;  // stamps kept boxes already tested for this query (they sit in several cells)
    auto exceeds = [&](const Entry& q) {
      // Cheap float test first: most boxes met share no area with the candidate
      // (both have positive area, so this is exactly box_overlap's "iw > 0 && ih > 0").
      if (!(q.x1 < fx2 && fx1 < q.x2 && q.y1 < fy2 && fy1 < q.y2)) return false;
      if (stamp_[q.id] == query_) return false;
      stamp_[q.id] = query_;
      return box_overlap(q.x1, q.y1, q.x2, q.y2, q.area, bx1, by1, bx2, by2, barea, M) > thr;
    };
    auto scan = [&](int64_t cx, int64_t cy) {
      Cell& cell = cells_[static_cast<size_t>(cy * nx_ + cx)];
      const size_t size = cell.entries.size();
      // The box that last suppressed a candidate here is the likeliest to do
      // it again: candidates of one object arrive one after the other.
      if (size == 0) return false;
      if (exceeds(cell.entries[cell.hint])) return true;
      for (size_t e = 0; e < size; ++e) {
        if (exceeds(cell.entries[e])) {
          cell.hint = static_cast<uint32_t>(e);
          return true;
        }
      }
      return false;
    };
    if (scan(ccx, ccy)) return true;
    for (int64_t cy = s.cy0; cy <= s.cy1; ++cy) {
      for (int64_t cx = s.cx0; cx <= s.cx1; ++cx) {
        if ((cx != ccx || cy != ccy) && scan(cx, cy)) return true;
      }
    }
    return false;
  }

  // Files kept candidate k under every cell of `s` (in insertion order, so
  // the highest-ranked kept boxes of a cell come first).
  void insert(const Candidates& c, size_t k, const Span& s) {
    const auto id = static_cast<int32_t>(stamp_.size());
    stamp_.push_back(0);
    for (int64_t cy = s.cy0; cy <= s.cy1; ++cy) {
      for (int64_t cx = s.cx0; cx <= s.cx1; ++cx) {
        cells_[static_cast<size_t>(cy * nx_ + cx)].entries.push_back({static_cast<float>(c.x1[k]), static_cast<float>(c.y1[k]),
                                                             static_cast<float>(c.x2[k]), static_cast<float>(c.y2[k]),
                                                             id, c.area[k]});
      }
    }
  }

 private:
  struct Entry {  // 32 bytes: two per cache line
    float x1, y1, x2, y2;  // the box's own float32 coordinates
    int32_t id;            // kept-box number, indexes stamp_
    double area;
  };

  // Monotone in v, clamped to [0, n - 1]; computed in double so that no
  // finite float32 coordinate can overflow the integer conversion.
  int64_t cell_of(double v, double origin, int64_t n) const {
    const double f = (v - origin) * inv_cell_;
    if (!(f > 0.0)) return 0;
    if (f >= static_cast<double>(n - 1)) return n - 1;
    return static_cast<int64_t>(f);  // truncation is floor here (f > 0), and cheaper than std::floor
  }

  double origin_x_ = 0.0, origin_y_ = 0.0, inv_cell_ = 1.0;
  int64_t nx_ = 0, ny_ = 0;
  struct Cell {
    std::vector<Entry> entries;  // kept boxes covering the cell, in rank order
    uint32_t hint = 0;           // entry that last suppressed a candidate
  };
  std::vector<Cell> cells_;
  std::vector<uint32_t> stamp_;  // per kept box: last query that tested it
  uint32_t query_ = 0;
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
  std::vector<uint32_t> keys;
  std::vector<int32_t> rows;
  keys.reserve(static_cast<size_t>(in.n));
  rows.reserve(static_cast<size_t>(in.n));
  for (int64_t i = 0; i < in.n; ++i) {
    if (score_threshold && !(static_cast<double>(in.scores[i]) > *score_threshold)) continue;
    keys.push_back(descending_key(in.scores[i]));
    rows.push_back(static_cast<int32_t>(i));
  }
  if (rows.size() >= kRadixSortMinRows) {
    radix_sort_rows(keys, rows);
    return rows;
  }
  std::vector<uint64_t> packed(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) packed[k] = (static_cast<uint64_t>(keys[k]) << 32) | static_cast<uint32_t>(rows[k]);
  std::sort(packed.begin(), packed.end());
  for (size_t k = 0; k < rows.size(); ++k) rows[k] = static_cast<int32_t>(packed[k] & 0xffffffffu);
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
