// Applying OSCAR rotations to KV rows (reference doc §6): keys are stored as k·R_K and queries rotated by
// R_K (q·k unchanged); values are stored as v·R_V and the attention output multiplied by R_Vᵀ.
//
// A rotation is the identity, one [d, d] matrix for the whole layer, or one [d, d] matrix per KV head
// ([Hkv, d, d], the "per_kv_head" zoo format). Matrices are row-major float32 and act on row vectors
// (x_rot = x · R), exactly as io::read_rotation_set returns them; this library never reads files itself.
// Copies share the matrix (cheap to pass to one cache per sequence).
#pragma once

#include <memory>
#include <vector>

namespace oscar::runtime {

class Rotation {
 public:
  /// The identity (no rotation).
  Rotation() = default;

  static Rotation identity() { return Rotation(); }
  /// One [d, d] matrix for every KV head of the layer.
  static Rotation per_layer(int head_dim, std::vector<float> matrix);
  /// One [d, d] matrix per KV head: matrix is [kv_heads, d, d].
  static Rotation per_kv_head(int kv_heads, int head_dim, std::vector<float> matrix);

  bool is_identity() const { return matrix_ == nullptr; }
  /// 0 for the identity, 1 for a per-layer rotation, Hkv for per-KV-head rotations.
  int heads() const { return heads_; }
  int head_dim() const { return head_dim_; }
  /// The [d, d] matrix applied to rows of KV head `kv_head`; nullptr for the identity.
  const float* matrix(int kv_head) const;

  /// y = x · R for KV head `kv_head` (float32, fixed summation order; y must not alias x).
  void apply(int kv_head, const float* x, float* y) const;
  /// y = x · Rᵀ (undoes apply for an orthogonal R; y must not alias x).
  void apply_transpose(int kv_head, const float* x, float* y) const;

  /// Throws std::invalid_argument unless the rotation fits a cache with these dimensions (the identity
  /// fits everything; per-KV-head rotations need exactly kv_heads matrices).
  void check_compatible(int kv_heads, int head_dim, const char* what) const;

  /// max |R·Rᵀ − I| over all matrices (0 for the identity), to check inputs.
  double orthogonality_error() const;

 private:
  int heads_ = 0;
  int head_dim_ = 0;
  std::shared_ptr<const std::vector<float>> matrix_;
};

}  // namespace oscar::runtime
