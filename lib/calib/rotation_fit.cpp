#include "calib/rotation_fit.h"

#include <algorithm>

#include "core/error.h"
#include "linalg/symmetric_eigen.h"

namespace oscar::calib {

namespace {

/// Appends a d×d matrix row-major as float32 (the zoo's storage: rotation[i][j] = R(i, j)).
void append_row_major(std::vector<float>& out, const Matrix& matrix) {
  for (long i = 0; i < matrix.rows(); ++i)
    for (long j = 0; j < matrix.cols(); ++j) out.push_back(float(matrix(i, j)));
}

void append_vector(std::vector<float>& out, const linalg::Vector& vector) {
  for (long i = 0; i < vector.size(); ++i) out.push_back(float(vector[i]));
}

/// Appends one rotation and its eigenvalues to the layer as float32 and widens the report's ranges. The
/// orthogonality error is measured on the float32 matrix actually written.
void append_rotation(const Matrix& rotation, const linalg::Vector& eigenvalues, io::LayerRotation& layer,
                     LayerFitReport& report, bool first) {
  append_row_major(layer.rotation, rotation);
  append_vector(layer.eigenvalues, eigenvalues);
  const double error = linalg::orthogonality_error(rotation.cast<float>().cast<double>());
  const double low = eigenvalues.minCoeff(), high = eigenvalues.maxCoeff();
  report.min_eigenvalue = first ? low : std::min(report.min_eigenvalue, low);
  report.max_eigenvalue = first ? high : std::max(report.max_eigenvalue, high);
  report.orthogonality_error = first ? error : std::max(report.orthogonality_error, error);
}

/// Eigendecomposes one covariance, composes R and appends it.
void fit_one(const Matrix& covariance, linalg::Composition composition, io::LayerRotation& layer,
             LayerFitReport& report, bool first) {
  const auto eigen = linalg::symmetric_eigen(covariance);
  append_rotation(linalg::compose_rotation(eigen, composition), eigen.eigenvalues, layer, report, first);
}

std::string objective_name(Covariance covariance, linalg::Composition composition) {
  return std::string(covariance_name(covariance)) + "_" + linalg::composition_name(composition);
}

std::string layer_context(int layer_id, const FittingTarget& target) {
  return "layer " + std::to_string(layer_id) + " (" + covariance_name(target.covariance) + "): ";
}

}  // namespace

Matrix layer_covariance(const CalibrationState& state, int layer_id, Covariance covariance) {
  state.require_complete_layer(layer_id);
  const int heads = state.geometry.num_kv_heads;
  Matrix sum = Matrix::Zero(state.geometry.head_dim, state.geometry.head_dim);
  for (int kv_head = 0; kv_head < heads; ++kv_head) {
    sum += head_covariance(state.heads.at({layer_id, kv_head}), covariance, state.geometry.group_size());
  }
  return sum / double(heads);
}

io::RotationSet fit_rotations(const CalibrationState& state, const std::vector<int>& layer_ids,
                              const FittingTarget& target, linalg::Composition composition,
                              Granularity granularity, std::vector<LayerFitReport>* reports) {
  io::RotationSet set;
  set.objective = objective_name(target.covariance, composition);
  const bool per_head = granularity == Granularity::kKvHead;
  set.format_version = per_head ? io::rotation_format::kPerKvHeadFormatVersion : io::rotation_format::kLayerFormatVersion;
  set.source_grouping = per_head ? io::rotation_format::kPerKvHeadGrouping : io::rotation_format::kLayerGrouping;
  for (int layer_id : layer_ids) {
    state.require_complete_layer(layer_id);
    io::LayerRotation layer;
    layer.layer_id = layer_id;
    layer.head_dim = state.geometry.head_dim;
    LayerFitReport report;
    report.layer_id = layer_id;
    try {
      if (per_head) {
        layer.num_heads = state.geometry.num_kv_heads;
        for (int kv_head = 0; kv_head < layer.num_heads; ++kv_head) {
          const Matrix covariance =
              head_covariance(state.heads.at({layer_id, kv_head}), target.covariance, state.geometry.group_size());
          fit_one(covariance, composition, layer, report, kv_head == 0);
        }
      } else {
        fit_one(layer_covariance(state, layer_id, target.covariance), composition, layer, report, true);
      }
    } catch (const std::exception& error) {  // missing statistics, a non-finite covariance, a failed solver
      throw InputError(layer_context(layer_id, target) + error.what());
    }
    set.layers.push_back(std::move(layer));
    if (reports) reports->push_back(report);
  }
  return set;
}

io::RotationSet hadamard_rotations(const std::vector<int>& layer_ids, int head_dim, std::vector<LayerFitReport>* reports) {
  io::RotationSet set;
  set.objective = "hadamard";
  const Matrix h = linalg::hadamard_rotation(head_dim);
  const linalg::Vector ones = linalg::Vector::Ones(head_dim);  // what the reference writes as "eigenvalues"
  for (int layer_id : layer_ids) {
    io::LayerRotation layer;
    layer.layer_id = layer_id;
    layer.head_dim = head_dim;
    LayerFitReport report{layer_id, 0, 0, 0};
    append_rotation(h, ones, layer, report, true);
    set.layers.push_back(std::move(layer));
    if (reports) reports->push_back(report);
  }
  return set;
}

}  // namespace oscar::calib
