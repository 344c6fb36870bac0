#include "zoo/rotation_diff.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "core/error.h"
#include "linalg/bit_reversal.h"
#include "linalg/composition.h"
#include "linalg/hadamard.h"

namespace oscar::zoo {
namespace {

using linalg::Composition;
using linalg::Matrix;
using linalg::Vector;

std::optional<Composition> composition_of(const std::string& objective) {
  const size_t underscore = objective.find('_');
  if (underscore == std::string::npos) return std::nullopt;
  try {
    return linalg::parse_composition(objective.substr(underscore + 1));
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

/// U from R for compositions that contain it (U·…, H·U·P, H·P·U); nullopt for data-free ones.
std::optional<Matrix> eigenbasis(const Matrix& r, const Vector& eigenvalues, Composition composition) {
  const long d = r.rows();
  const auto h = [&] { return linalg::hadamard(d); };
  const auto p = [&] { return linalg::permutation_matrix(linalg::bit_reversal_permutation(eigenvalues)); };
  switch (composition) {
    case Composition::kPlain: return r;
    case Composition::kBr: return Matrix(r * p().transpose());
    case Composition::kBrH128: return Matrix(r * h() * p().transpose());
    case Composition::kRH: return Matrix(r * h());
    case Composition::kHRPbr: return Matrix(h() * r * p().transpose());
    case Composition::kHPbrR: return Matrix(p().transpose() * h() * r);
    case Composition::kRHPbr: return Matrix(r * p().transpose() * h());
    case Composition::kPbr:
    case Composition::kHPbr: return std::nullopt;
  }
  return std::nullopt;
}

/// P is rebuilt from the stored float32 eigenvalues; calibration ordered them in float64. When two of them are
/// equal in float32 the order may differ, and U recovered through P would be wrong in every column.
bool ties_break_permutation(const Vector& eigenvalues, Composition composition) {
  const bool uses_permutation = composition != Composition::kPlain && composition != Composition::kRH;
  std::vector<double> sorted(eigenvalues.data(), eigenvalues.data() + eigenvalues.size());
  std::sort(sorted.begin(), sorted.end());
  return uses_permutation && std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
}

Matrix matrix_of(const io::LayerRotation& layer, int head) {
  const long d = layer.head_dim;
  Matrix m(d, d);
  const float* base = layer.rotation.data() + size_t(head) * size_t(d * d);
  for (long i = 0; i < d; ++i) {
    for (long j = 0; j < d; ++j) m(i, j) = base[i * d + j];
  }
  return m;
}

Vector eigenvalues_of(const io::LayerRotation& layer, int head) {
  const long d = layer.head_dim;
  Vector v(d);
  for (long i = 0; i < d; ++i) v(i) = layer.eigenvalues[size_t(head) * size_t(d) + size_t(i)];
  return v;
}

/// Columns of U ordered by eigenvalue, largest first.
Matrix by_descending_eigenvalue(const Matrix& u, const Vector& eigenvalues) {
  std::vector<long> order(size_t(eigenvalues.size()));
  std::iota(order.begin(), order.end(), 0L);
  std::stable_sort(order.begin(), order.end(), [&](long x, long y) { return eigenvalues(x) > eigenvalues(y); });
  Matrix sorted(u.rows(), u.cols());
  for (size_t j = 0; j < order.size(); ++j) sorted.col(long(j)) = u.col(order[j]);
  return sorted;
}

void compare_eigenbases(const Matrix& ua, const Matrix& ub, HeadDiff& diff) {
  const long d = ua.rows();
  const Matrix cosines = ua.transpose() * ub;  // [i, j] = u_A,i · u_B,j
  for (long k : {std::max(1L, d / 8), std::max(1L, d / 4), std::max(1L, d / 2)}) {
    diff.subspace_sizes.push_back(int(k));
    diff.overlaps.push_back(cosines.topLeftCorner(k, k).squaredNorm() / double(k));
  }
  double sum = 0;
  for (long i = 0; i < d; ++i) sum += cosines.row(i).cwiseAbs().maxCoeff();
  diff.matched_cosine = sum / double(d);
}

}  // namespace

std::vector<HeadDiff> diff_rotation_sets(const io::RotationSet& a, const io::RotationSet& b, const std::string& what) {
  if (a.layers.size() != b.layers.size()) throw InputError(what + ": the sets have " + std::to_string(a.layers.size()) + " and " + std::to_string(b.layers.size()) + " layers");
  const auto composition_a = composition_of(a.objective), composition_b = composition_of(b.objective);
  std::vector<HeadDiff> diffs;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const io::LayerRotation &la = a.layers[l], &lb = b.layers[l];
    if (la.layer_id != lb.layer_id || la.num_heads != lb.num_heads || la.head_dim != lb.head_dim) {
      throw InputError(what + ": layer " + std::to_string(la.layer_id) + " differs in id, head count or head_dim");
    }
    for (int head = 0; head < la.num_heads; ++head) {
      HeadDiff diff;
      diff.layer_id = la.layer_id;
      diff.head = head;
      const Matrix ra = matrix_of(la, head), rb = matrix_of(lb, head);
      const Vector ea = eigenvalues_of(la, head), eb = eigenvalues_of(lb, head);
      diff.max_abs_difference = (ra - rb).cwiseAbs().maxCoeff();
      const double scale = std::max(ea.cwiseAbs().maxCoeff(), 1e-300);
      diff.eigenvalue_difference = (ea - eb).cwiseAbs().maxCoeff() / scale;
      if (composition_a && composition_b && !ties_break_permutation(ea, *composition_a) && !ties_break_permutation(eb, *composition_b)) {
        const auto ua = eigenbasis(ra, ea, *composition_a), ub = eigenbasis(rb, eb, *composition_b);
        if (ua && ub) {
          diff.has_eigenbasis = true;
          compare_eigenbases(by_descending_eigenvalue(*ua, ea), by_descending_eigenvalue(*ub, eb), diff);
        }
      }
      diffs.push_back(diff);
    }
  }
  return diffs;
}

}  // namespace oscar::zoo
