// From accumulated statistics to RotationZoo rotation sets: covariance, eigendecomposition, composition.
#pragma once

#include <vector>

#include "calib/calibration_state.h"
#include "calib/method.h"
#include "io/rotation_set.h"
#include "linalg/composition.h"

namespace oscar::calib {

/// What fitting found for one layer and target, for calibration.json and the log.
struct LayerFitReport {
  int layer_id = 0;
  double min_eigenvalue = 0.0;
  double max_eigenvalue = 0.0;
  double orthogonality_error = 0.0;  ///< max |R·Rᵀ − I| of the float32 rotation(s) as written
};

/// The layer covariance of the reference: the mean over KV heads of each head's covariance.
Matrix layer_covariance(const CalibrationState& state, int layer_id, Covariance covariance);

/// Rotations of every layer in `layer_ids` for one target. Granularity kLayer gives format 1 (one
/// rotation per layer); kKvHead gives format 2 (one per KV head, from each head's own covariance).
/// Objective "<cov>_<composition>". Throws InputError naming the layer when it lacks statistics or its covariance is not finite.
io::RotationSet fit_rotations(const CalibrationState& state, const std::vector<int>& layer_ids,
                              const FittingTarget& target, linalg::Composition composition,
                              Granularity granularity, std::vector<LayerFitReport>* reports);

/// The data-free method: R = H, eigenvalues all 1 (as the reference writes them), objective "hadamard".
io::RotationSet hadamard_rotations(const std::vector<int>& layer_ids, int head_dim, std::vector<LayerFitReport>* reports);

}  // namespace oscar::calib
