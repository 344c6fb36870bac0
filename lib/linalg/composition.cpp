#include "linalg/composition.h"

#include <stdexcept>

#include "linalg/bit_reversal.h"
#include "linalg/hadamard.h"

namespace oscar::linalg {

const std::vector<std::string>& composition_names() {
  static const std::vector<std::string> names = {"plain", "pbr",     "br",      "br_h128", "r_h",
                                                 "h_pbr", "h_r_pbr", "h_pbr_r", "r_h_pbr"};
  return names;
}

std::string composition_name(Composition composition) {
  return composition_names().at(static_cast<std::size_t>(composition));
}

Composition parse_composition(const std::string& name) {
  const auto& names = composition_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<Composition>(i);
  }
  std::string choices;
  for (const auto& n : names) choices += (choices.empty() ? "" : "|") + n;
  throw std::invalid_argument("unknown composition '" + name + "' (choose " + choices + ")");
}

Matrix compose_rotation(const SymmetricEigen& eigen, Composition composition) {
  const Matrix& u = eigen.eigenvectors;
  // H and P are built only when used: plain needs neither, nor a power-of-two dimension.
  const auto h = [&] { return hadamard(u.rows()); };
  const auto p = [&] { return permutation_matrix(bit_reversal_permutation(eigen.eigenvalues)); };
  switch (composition) {
    case Composition::kPlain: return u;
    case Composition::kPbr: return p();
    case Composition::kBr: return u * p();
    case Composition::kBrH128: return u * p() * h();
    case Composition::kRH: return u * h();
    case Composition::kHPbr: return h() * p();
    case Composition::kHRPbr: return h() * u * p();
    case Composition::kHPbrR: return h() * p() * u;
    case Composition::kRHPbr: return u * h() * p();
  }
  throw std::logic_error("unhandled composition");
}

Matrix hadamard_rotation(long d) { return hadamard(d); }

double orthogonality_error(const Matrix& rotation) {
  const Matrix product = rotation * rotation.transpose();
  return (product - Matrix::Identity(rotation.rows(), rotation.cols())).cwiseAbs().maxCoeff();
}

}  // namespace oscar::linalg
