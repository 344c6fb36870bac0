// How far apart two rotation sets of the same model are, in a way that ignores what calibration cannot pin
// down: the sign of each eigenvector and the basis inside a repeated eigenvalue. The eigenbasis U is recovered
// from each rotation through its composition (R = U·H·P for r_h_pbr, P from the stored eigenvalues), and
// the sets are compared by the overlap of their top-k eigen-subspaces,
//     overlap_k = ‖U_A[:, top k]ᵀ · U_B[:, top k]‖_F² / k      (1: the same subspace, ~k/d: unrelated),
// and by the mean over A's eigenvectors of the best |cos| with any of B's. Data-free compositions (hadamard,
// pbr, h_pbr) have no eigenbasis, nor do sets whose stored float32 eigenvalues tie (P cannot be rebuilt then):
// only max |R_A − R_B| is reported.
#pragma once

#include <string>
#include <vector>

#include "io/rotation_set.h"

namespace oscar::zoo {

struct HeadDiff {
  int layer_id = 0;
  int head = 0;                      ///< 0 for per-layer sets
  bool has_eigenbasis = false;
  std::vector<int> subspace_sizes;   ///< k = d/8, d/4, d/2 (at least 1)
  std::vector<double> overlaps;      ///< overlap_k per size
  double matched_cosine = 0;         ///< mean best |cos| of A's eigenvectors in B
  double max_abs_difference = 0;     ///< max |R_A − R_B| (sign-sensitive, for identical-file checks)
  double eigenvalue_difference = 0;  ///< max |λ_A − λ_B| / max |λ_A|
};

/// Throws oscar::InputError("<what>: ...") when the sets differ in layers, head count or head_dim.
std::vector<HeadDiff> diff_rotation_sets(const io::RotationSet& a, const io::RotationSet& b, const std::string& what);

}  // namespace oscar::zoo
