// Dense double-precision matrices used by every linalg routine. Eigen is column-major by default;
// element (i, j) is row i, column j whatever the storage order.
#pragma once

#include <Eigen/Dense>

namespace oscar::linalg {

using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

/// True for 1, 2, 4, 8, ...
inline bool is_power_of_two(long n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace oscar::linalg
