// Face alignment's geometry (lanner.face.align.align_faces): the least-squares similarity taking a
// face's five landmarks onto a chip template, and the supersampling factor of the warp that follows
// (the warp itself is OpenCV's, called from Python, which first box-halves the image under a chip of
// factor k > 2 until a factor of at most 2 is left).
//
// Conventions (as lanner/face/align.py documents them): image pixel centres on integers; chip pixel
// centres of a size-px chip at u * size - 0.5 for unit chip coordinates u. The supersampling factor of
// an image -> chip matrix is the smallest integer k that makes the warp onto a chip k times larger an
// upsampling: k = max(1, ceil(1 / scale - 0.01)), scale = chip px per image px. Validation lives in
// align.cpp; these functions assume valid input.
#pragma once

namespace lanner::face {

constexpr int kLandmarks = 5;  // left eye, right eye, nose, left and right mouth corner

// The least-squares similarity (rotation, uniform scale, translation; no reflection) taking the
// kLandmarks points (x, y pairs) onto dst: m = [[a, -b, tx], [b, a, ty]] (image -> chip, row major).
// The points must not all coincide.
void fit_similarity(const double* points, const double* dst, double m[6]);

// The supersampling factor k of an image -> chip matrix (see above).
int supersampling(const double m[6]);

}  // namespace lanner::face
