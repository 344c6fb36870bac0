// The optimal (minimum mean-squared error) scalar quantizer of the standard Gaussian N(0, 1) with 2^b levels
// (Lloyd 1957/1982, Max 1960). It satisfies the two Lloyd–Max conditions:
//   - every threshold is the midpoint of the two levels around it (nearest-level encoding), and
//   - every level is the centroid of its cell (a, b):  c = (φ(a) − φ(b)) / (Φ(b) − Φ(a)).
// TurboQuant (baseline_quantizers.h) applies it to the coordinates of a randomly rotated unit vector scaled by
// √d, which are close to N(0, 1).
//
// Known levels (positive half): b = 1: 0.7979; b = 2: 0.4528, 1.5104; b = 3: 0.2451, 0.7560, 1.3439, 2.1520.
#pragma once

#include <vector>

namespace oscar::runtime {

inline constexpr int kMaxLloydMaxBits = 8;

/// The 2^bits levels, ascending and symmetric about 0, for 1 ≤ bits ≤ kMaxLloydMaxBits (std::invalid_argument
/// otherwise): both conditions above hold to 1e-12 (exact Gaussian integrals; see lloyd_max.cpp for the
/// solver). Computed once per process for each bits.
std::vector<double> gaussian_lloyd_max_levels(int bits);

/// Encoding to and decoding from those levels.
class GaussianLloydMax {
 public:
  explicit GaussianLloydMax(int bits);

  int bits() const { return bits_; }
  int levels() const { return int(levels_.size()); }
  /// The nearest level's index: the number of thresholds ≤ y (a value exactly on a threshold goes up; NaN → 0).
  int encode(double y) const;
  double decode(int code) const { return levels_[code]; }
  const std::vector<double>& level_values() const { return levels_; }
  /// The 2^bits − 1 thresholds: midpoints of adjacent levels.
  const std::vector<double>& thresholds() const { return thresholds_; }
  /// E[(Y − decode(encode(Y)))²] for Y ~ N(0, 1), from exact integrals (0.3634, 0.1175, 0.03454 for b = 1..3).
  double distortion() const;

 private:
  int bits_;
  std::vector<double> levels_;
  std::vector<double> thresholds_;
};

}  // namespace oscar::runtime
