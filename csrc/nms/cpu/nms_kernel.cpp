// CPU NMS kernels: greedy hard NMS (class-agnostic and per-class) and Soft-NMS.
//
// Greedy NMS keeps a box iff no higher-ranked *kept* box overlaps it by more
// than the threshold. We therefore test each candidate (in rank order) against
// the kept boxes only, and find those through a multi-level uniform grid over
// the image (a "hierarchical grid", cf. Ericson, Real-Time Collision Detection,
// sec. 7.2): level l has cells 2^l times the base cell, and a kept box is filed
// under every cell it covers on the level where it covers at most ~3 x 3 cells.
// A candidate looks in the cells it covers on every level. Two boxes that share
// a region of positive area share a cell on each level (cell indices are
// monotone in the coordinates), and any overlap above a threshold in [0, 1]
// needs a positive-area intersection, so the grid misses nothing. For IoU, a
// level whose kept boxes are all smaller than threshold x the candidate's area
// is skipped (IoU <= smaller area / larger area). The cost is O(N log N) for
// the sort plus O(N x kept boxes nearby), instead of the O(N x kept) of the
// textbook loop (OpenCV's NMSBoxes), whatever the spread of box sizes.
//
// While few boxes are kept, a linear scan over them (structure-of-arrays, a
// branch-free loop vectorised per instruction set) is cheaper than the grid:
// the grid is built once more than kLinearMaxKept boxes are kept.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "nms/nms.h"

namespace lanner {
namespace {

// Up to this many kept boxes a vectorised linear scan beats the grid (measured
// on clustered detector boxes and on benchmarks/nms' uniform ones).
constexpr size_t kLinearMaxKept = 256;
// Base grid cell side as a fraction of the median box side (a typical box
// covers about 3 x 3 cells on level 0), and the most level-0 cells per box.
constexpr double kCellPerMedianSide = 0.5;
constexpr double kCellsPerBox = 4.0;
// A box is filed on the lowest level whose cell side is >= its longer side
// divided by this (so it covers at most 3 x 3 cells there).
constexpr double kSidesPerCell = 2.0;
// Relative slack when skipping a level by the area bound: far above the few
// ulps of rounding in box_overlap, far below any meaningful threshold change.
constexpr double kAreaBoundSlack = 1e-9;
// From this many rows on, radix sort beats std::sort.
constexpr size_t kRadixSortMinRows = 1024;
// Kept boxes are scanned in blocks of this many before testing for a hit:
// long enough to vectorise, short enough to exit early.
constexpr size_t kScanBlock = 32;

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

// True when one of the n boxes (structure-of-arrays) overlaps box b by more than
// thr: box_overlap() written branch-free, so that the block loop vectorises (8, 4
// or 2 doubles per instruction, cloned per instruction set). IEEE division and no
// contraction (-ffp-contract=off): every clone decides exactly as box_overlap.
__attribute__((target_clones("avx512f", "avx2", "default"))) bool scan_exceeds(
    const double* x1, const double* y1, const double* x2, const double* y2, const double* area, size_t n, double bx1,
    double by1, double bx2, double by2, double barea, bool min_mode, double thr) {
  for (size_t start = 0; start < n; start += kScanBlock) {
    const size_t stop = std::min(n, start + kScanBlock);
    int64_t hits = 0;  // 64-bit, like the doubles, so that the loop vectorises
    if (min_mode) {
      for (size_t j = start; j < stop; ++j) {
        const double iw = (x2[j] < bx2 ? x2[j] : bx2) - (x1[j] > bx1 ? x1[j] : bx1);
        const double ih = (y2[j] < by2 ? y2[j] : by2) - (y1[j] > by1 ? y1[j] : by1);
        const double inter = iw * ih;
        const double overlap = inter / (area[j] < barea ? area[j] : barea);
        hits |= int64_t{iw > 0.0} & int64_t{ih > 0.0} & int64_t{overlap > thr};
      }
    } else {
      for (size_t j = start; j < stop; ++j) {
        const double iw = (x2[j] < bx2 ? x2[j] : bx2) - (x1[j] > bx1 ? x1[j] : bx1);
        const double ih = (y2[j] < by2 ? y2[j] : by2) - (y1[j] > by1 ? y1[j] : by1);
        const double inter = iw * ih;
        const double overlap = inter / ((area[j] + barea) - inter);
        hits |= int64_t{iw > 0.0} & int64_t{ih > 0.0} & int64_t{overlap > thr};
      }
    }
    if (hits != 0) return true;
  }
  return false;
}

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
    return scan_exceeds(x1.data(), y1.data(), x2.data(), y2.data(), area.data(), size(), c.x1[k], c.y1[k], c.x2[k],
                        c.y2[k], c.area[k], M == OverlapMode::kMin, thr);
  }
};

// Multi-level grid of kept boxes (see the file comment).
class KeptGrid {
 public:
  // Sizes the levels from the positive-area candidates [begin, end).
  KeptGrid(const Candidates& c, size_t begin, size_t end) {
    double min_x = INFINITY, min_y = INFINITY, max_x = -INFINITY, max_y = -INFINITY;
    std::vector<double> sides;
    sides.reserve(end - begin);
    for (size_t k = begin; k < end; ++k) {
      if (!(c.area[k] > 0.0)) continue;
      min_x = std::min(min_x, c.x1[k]);
      min_y = std::min(min_y, c.y1[k]);
      max_x = std::max(max_x, c.x2[k]);
      max_y = std::max(max_y, c.y2[k]);
      sides.push_back(std::max(c.x2[k] - c.x1[k], c.y2[k] - c.y1[k]));
    }
    if (sides.empty()) return;  // nothing can overlap anything
    // Base cell: a fraction of the median box side, grown if needed to keep
    // level 0 near kCellsPerBox cells per box.
    auto median = sides.begin() + static_cast<std::ptrdiff_t>(sides.size() / 2);
    std::nth_element(sides.begin(), median, sides.end());
    const double extent_x = max_x - min_x, extent_y = max_y - min_y;
    const double max_cells = std::max<double>(64.0, kCellsPerBox * static_cast<double>(sides.size()));
    double cell = std::max(*median * kCellPerMedianSide, std::sqrt(extent_x * extent_y / max_cells));
    cell = std::max({cell, extent_x / max_cells, extent_y / max_cells});
    origin_x_ = min_x;
    origin_y_ = min_y;
    // Levels up to one cell covering everything (at most ~log2(max_cells) + 1).
    for (;;) {
      Level level;
      level.cell = cell;
      level.inv_cell = 1.0 / cell;
      level.nx = std::max<int64_t>(1, static_cast<int64_t>(std::min(max_cells, extent_x * level.inv_cell)) + 1);
      level.ny = std::max<int64_t>(1, static_cast<int64_t>(std::min(max_cells, extent_y * level.inv_cell)) + 1);
      const bool top = level.nx * level.ny == 1;
      levels_.push_back(std::move(level));
      if (top || !std::isfinite(cell * 2.0)) break;
      cell *= 2.0;
    }
  }

  // True when a kept box overlaps candidate k by more than thr.
  template <OverlapMode M>
  bool any_exceeds(const Candidates& c, size_t k, double thr) {
    const Query q(c, k, thr);
    ++query_;  // stamps kept boxes already tested for this query (they sit in several cells)
    const size_t own = level_of(c, k);
    if (scan_level<M>(levels_[own], q, thr)) return true;
    for (size_t l = 0; l < levels_.size(); ++l) {
      if (l == own || levels_[l].count == 0) continue;
      // IoU <= smaller area / larger area: a level of boxes all much smaller,
      // or all much larger, than the candidate cannot reach thr.
      if (M == OverlapMode::kUnion && (levels_[l].max_area < q.min_area || levels_[l].min_area > q.max_area)) {
        continue;
      }
      if (scan_level<M>(levels_[l], q, thr)) return true;
    }
    return false;
  }

  // Files kept candidate k on its level, under every cell it covers.
  void insert(const Candidates& c, size_t k) {
    const auto id = static_cast<int32_t>(stamp_.size());
    stamp_.push_back(0);
    Level& level = levels_[level_of(c, k)];
    if (level.cells.empty()) level.cells.resize(static_cast<size_t>(level.nx * level.ny));
    ++level.count;
    level.max_area = std::max(level.max_area, c.area[k]);
    level.min_area = std::min(level.min_area, c.area[k]);
    const Entry e{static_cast<float>(c.x1[k]),
                  static_cast<float>(c.y1[k]),
                  static_cast<float>(c.x2[k]),
                  static_cast<float>(c.y2[k]),
                  id,
                  c.area[k]};
    const int64_t cx0 = cell_of(c.x1[k], origin_x_, level.inv_cell, level.nx);
    const int64_t cx1 = cell_of(c.x2[k], origin_x_, level.inv_cell, level.nx);
    const int64_t cy0 = cell_of(c.y1[k], origin_y_, level.inv_cell, level.ny);
    const int64_t cy1 = cell_of(c.y2[k], origin_y_, level.inv_cell, level.ny);
    for (int64_t cy = cy0; cy <= cy1; ++cy) {
      for (int64_t cx = cx0; cx <= cx1; ++cx) level.cells[static_cast<size_t>(cy * level.nx + cx)].entries.push_back(e);
    }
  }

 private:
  struct Entry {           // 32 bytes: two per cache line
    float x1, y1, x2, y2;  // the box's own float32 coordinates
    int32_t id;            // kept-box number, indexes stamp_
    double area;
  };
  struct Cell {
    std::vector<Entry> entries;  // kept boxes covering the cell, in rank order
    uint32_t hint = 0;           // entry that last suppressed a candidate
  };
  struct Level {
    double cell = 1.0, inv_cell = 1.0;
    int64_t nx = 1, ny = 1;
    size_t count = 0;            // kept boxes filed here
    double max_area = 0.0;       // largest of their areas
    double min_area = INFINITY;  // smallest of their areas
    std::vector<Cell> cells;     // allocated on the first insertion
  };
  struct Query {
    Query(const Candidates& c, size_t k, double thr)
        : x1(c.x1[k]),
          y1(c.y1[k]),
          x2(c.x2[k]),
          y2(c.y2[k]),
          area(c.area[k]),
          // exact: the coordinates are float32
          fx1(static_cast<float>(x1)),
          fy1(static_cast<float>(y1)),
          fx2(static_cast<float>(x2)),
          fy2(static_cast<float>(y2)),
          // IoU <= smaller area / larger area, so an IoU above thr needs the other
          // area in [thr * area, area / thr] (with slack for rounding).
          min_area(thr * area * (1.0 - kAreaBoundSlack)),
          max_area(thr > 0.0 ? area / (thr * (1.0 - kAreaBoundSlack)) : INFINITY) {}
    double x1, y1, x2, y2, area;
    float fx1, fy1, fx2, fy2;
    double min_area, max_area;
  };

  // Lowest level whose cells are at least (longer side / kSidesPerCell).
  size_t level_of(const Candidates& c, size_t k) const {
    const double side = std::max(c.x2[k] - c.x1[k], c.y2[k] - c.y1[k]);
    size_t l = 0;
    while (l + 1 < levels_.size() && side > kSidesPerCell * levels_[l].cell) ++l;
    return l;
  }

  // Scans the cells of `level` covered by the query box, the cell under its
  // centre first: a box that overlaps it enough to suppress it almost always
  // covers its centre.
  template <OverlapMode M>
  bool scan_level(Level& level, const Query& q, double thr) {
    if (level.count == 0) return false;
    auto exceeds = [&](const Entry& e) {
      // Cheap float test first: most boxes met share no area with the candidate
      // (both have positive area, so this is exactly box_overlap's "iw > 0 && ih > 0").
      if (!(e.x1 < q.fx2 && q.fx1 < e.x2 && e.y1 < q.fy2 && q.fy1 < e.y2)) return false;
      if (stamp_[e.id] == query_) return false;
      stamp_[e.id] = query_;
      return box_overlap(e.x1, e.y1, e.x2, e.y2, e.area, q.x1, q.y1, q.x2, q.y2, q.area, M) > thr;
    };
    auto scan_cell = [&](int64_t cx, int64_t cy) {
      Cell& cell = level.cells[static_cast<size_t>(cy * level.nx + cx)];
      const size_t size = cell.entries.size();
      if (size == 0) return false;
      // The box that last suppressed a candidate here is the likeliest to do
      // it again: candidates of one object arrive one after the other.
      if (exceeds(cell.entries[cell.hint])) return true;
      for (size_t e = 0; e < size; ++e) {
        if (exceeds(cell.entries[e])) {
          cell.hint = static_cast<uint32_t>(e);
          return true;
        }
      }
      return false;
    };
    const int64_t cx0 = cell_of(q.x1, origin_x_, level.inv_cell, level.nx);
    const int64_t cx1 = cell_of(q.x2, origin_x_, level.inv_cell, level.nx);
    const int64_t cy0 = cell_of(q.y1, origin_y_, level.inv_cell, level.ny);
    const int64_t cy1 = cell_of(q.y2, origin_y_, level.inv_cell, level.ny);
    const int64_t ccx = cell_of(0.5 * (q.x1 + q.x2), origin_x_, level.inv_cell, level.nx);
    const int64_t ccy = cell_of(0.5 * (q.y1 + q.y2), origin_y_, level.inv_cell, level.ny);
    if (scan_cell(ccx, ccy)) return true;
    for (int64_t cy = cy0; cy <= cy1; ++cy) {
      for (int64_t cx = cx0; cx <= cx1; ++cx) {
        if ((cx != ccx || cy != ccy) && scan_cell(cx, cy)) return true;
      }
    }
    return false;
  }

  // Monotone in v, clamped to [0, n - 1]; computed in double so that no
  // finite float32 coordinate can overflow the integer conversion.
  static int64_t cell_of(double v, double origin, double inv_cell, int64_t n) {
    const double f = (v - origin) * inv_cell;
    if (!(f > 0.0)) return 0;
    if (f >= static_cast<double>(n - 1)) return n - 1;
    return static_cast<int64_t>(f);  // truncation is floor here (f > 0), and cheaper than std::floor
  }

  double origin_x_ = 0.0, origin_y_ = 0.0;
  std::vector<Level> levels_;
  std::vector<uint32_t> stamp_;  // per kept box: last query that tested it
  uint32_t query_ = 0;
};

// Greedy NMS over candidates [begin, end) (rank order). Appends the positions
// (into `c`) of kept candidates to `kept`, at most `limit` of them. Kept boxes
// are scanned linearly until more than kLinearMaxKept are kept, then filed in
// the grid (all of them, and every later one).
template <OverlapMode M>
void greedy_nms(const Candidates& c, size_t begin, size_t end, double thr, size_t limit, std::vector<size_t>& kept) {
  const size_t first = kept.size();  // this segment's entries in `kept`
  KeptBoxes linear;                  // kept positive-area boxes, until the grid takes over
  std::optional<KeptGrid> grid;
  for (size_t k = begin; k < end && kept.size() - first < limit; ++k) {
    if (c.area[k] > 0.0) {  // zero-area boxes overlap nothing: always kept
      if (grid) {
        if (grid->any_exceeds<M>(c, k, thr)) continue;
        grid->insert(c, k);
      } else {
        if (linear.any_exceeds<M>(c, k, thr)) continue;
        linear.push(c, k);
        if (linear.size() > kLinearMaxKept) {
          grid.emplace(c, begin, end);
          for (size_t i = first; i < kept.size(); ++i) {
            if (c.area[kept[i]] > 0.0) grid->insert(c, kept[i]);
          }
          grid->insert(c, k);
        }
      }
    }
    kept.push_back(k);
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
  for (size_t k = 0; k < rows.size(); ++k)
    packed[k] = (static_cast<uint64_t>(keys[k]) << 32) | static_cast<uint32_t>(rows[k]);
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
    std::stable_sort(rows.begin(), rows.end(), [&](int32_t a, int32_t b) { return in.class_ids[a] < in.class_ids[b]; });
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
