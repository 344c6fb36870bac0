// Rotation compositions of the OSCAR reference: products of the eigenbasis U, the Hadamard H and the
// eigenvalue-ordered bit-reversal permutation P, named by their factors left to right.
//
//   plain = U          pbr   = P          br      = U·P        br_h128 = U·P·H      r_h     = U·H
//   h_pbr = H·P        h_r_pbr = H·U·P    h_pbr_r = H·P·U      r_h_pbr = U·H·P   (validated default)
//
// Every product of orthogonal matrices is orthogonal; rotations are applied to row vectors (x · R).
#pragma once

#include <string>
#include <vector>

#include "linalg/matrix.h"
#include "linalg/symmetric_eigen.h"

namespace oscar::linalg {

enum class Composition { kPlain, kPbr, kBr, kBrH128, kRH, kHPbr, kHRPbr, kHPbrR, kRHPbr };

/// Reference names ("r_h_pbr", ...), in the order of the enum.
const std::vector<std::string>& composition_names();
std::string composition_name(Composition composition);
/// Throws std::invalid_argument naming the valid choices.
Composition parse_composition(const std::string& name);

/// The composed rotation for one covariance's eigendecomposition. d must be a power of two.
Matrix compose_rotation(const SymmetricEigen& eigen, Composition composition);

/// The data-free method "hadamard": R = H for every layer (QuaRot-like baseline).
Matrix hadamard_rotation(long d);

/// max |R·Rᵀ − I| over all entries.
double orthogonality_error(const Matrix& rotation);

}  // namespace oscar::linalg
