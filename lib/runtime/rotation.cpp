#include "runtime/rotation.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace oscar::runtime {

Rotation Rotation::per_layer(int head_dim, std::vector<float> matrix) {
  return per_kv_head(1, head_dim, std::move(matrix));
}

Rotation Rotation::per_kv_head(int kv_heads, int head_dim, std::vector<float> matrix) {
  const std::size_t expected = std::size_t(kv_heads > 0 ? kv_heads : 0) * std::size_t(head_dim > 0 ? head_dim : 0) *
                               std::size_t(head_dim > 0 ? head_dim : 0);
  if (kv_heads <= 0 || head_dim <= 0 || matrix.size() != expected) {
    throw std::invalid_argument("rotation: expected [" + std::to_string(kv_heads) + ", " + std::to_string(head_dim) +
                                ", " + std::to_string(head_dim) + "] floats, got " + std::to_string(matrix.size()));
  }
  for (float x : matrix) {
    if (!std::isfinite(x)) throw std::invalid_argument("rotation: non-finite matrix element");
  }
  Rotation r;
  r.heads_ = kv_heads;
  r.head_dim_ = head_dim;
  r.matrix_ = std::make_shared<const std::vector<float>>(std::move(matrix));
  return r;
}

const float* Rotation::matrix(int kv_head) const {
  if (!matrix_) return nullptr;
  const int index = heads_ == 1 ? 0 : kv_head;
  return matrix_->data() + std::size_t(index) * std::size_t(head_dim_) * std::size_t(head_dim_);
}

void Rotation::apply(int kv_head, const float* x, float* y) const {
  const float* r = matrix(kv_head);
  const int d = head_dim_;
  if (!r) throw std::logic_error("Rotation::apply on the identity: the caller copies");
  // y[j] = Σ_i x[i]·R[i][j], i ascending: the inner loop runs along a row of R (vectorises).
  for (int j = 0; j < d; ++j) y[j] = 0.0f;
  for (int i = 0; i < d; ++i) {
    const float xi = x[i];
    const float* row = r + std::size_t(i) * d;
    for (int j = 0; j < d; ++j) y[j] += xi * row[j];
  }
}

void Rotation::apply_transpose(int kv_head, const float* x, float* y) const {
  const float* r = matrix(kv_head);
  const int d = head_dim_;
  if (!r) throw std::logic_error("Rotation::apply_transpose on the identity: the caller copies");
  // y[j] = Σ_i x[i]·R[j][i]: a dot product with row j of R.
  for (int j = 0; j < d; ++j) {
    const float* row = r + std::size_t(j) * d;
    float sum = 0.0f;
    for (int i = 0; i < d; ++i) sum += x[i] * row[i];
    y[j] = sum;
  }
}

void Rotation::check_compatible(int kv_heads, int head_dim, const char* what) const {
  if (is_identity()) return;
  if (head_dim_ != head_dim) {
    throw std::invalid_argument(std::string(what) + ": rotation is " + std::to_string(head_dim_) + "-dimensional, heads are " +
                                std::to_string(head_dim));
  }
  if (heads_ != 1 && heads_ != kv_heads) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(heads_) + " per-head rotations for " +
                                std::to_string(kv_heads) + " KV heads");
  }
}

double Rotation::orthogonality_error() const {
  if (!matrix_) return 0.0;
  const int d = head_dim_;
  double worst = 0.0;
  for (int h = 0; h < heads_; ++h) {
    const float* r = matrix_->data() + std::size_t(h) * d * d;
    for (int a = 0; a < d; ++a) {
      for (int b = 0; b < d; ++b) {
        double dot = 0.0;
        for (int i = 0; i < d; ++i) dot += double(r[std::size_t(a) * d + i]) * double(r[std::size_t(b) * d + i]);
        worst = std::max(worst, std::fabs(dot - (a == b ? 1.0 : 0.0)));
      }
    }
  }
  return worst;
}

}  // namespace oscar::runtime
