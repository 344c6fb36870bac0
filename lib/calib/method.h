// Calibration methods: which covariance each rotation target (K or V) is fitted to, and which running
// statistics that needs.
//
//   qqt  (keys)   C_Q = mean over tokens and query heads of q·qᵀ
//   sst  (values) C_S = mean over KV heads h of Σ_t u_t·v·vᵀ / Σ_t u_t,  u_t = kᵀ·C̄_Q,h·k  (two passes)
//   ktk, vtv      mean of k·kᵀ (v·vᵀ) over tokens and KV heads (data-covariance baselines)
//   hadamard      R = H for every layer, no data
#pragma once

#include <string>
#include <vector>

namespace oscar::calib {

enum class Covariance { kQqt, kSst, kKtk, kVtv };
enum class Target { kKey, kValue };
enum class Granularity { kLayer, kKvHead };

struct FittingTarget {
  Target target;
  Covariance covariance;
};

/// Which sums a method needs; statistics not needed are neither computed nor stored.
struct StatisticsMask {
  bool query = false;           ///< Σ q·qᵀ (qqt, and the weights of sst)
  bool key_value = false;       ///< Σ k·kᵀ and Σ v·vᵀ (ktk, vtv)
  bool weighted_value = false;  ///< second pass: Σ u·v·vᵀ, Σ u (sst)

  bool operator==(const StatisticsMask& other) const {
    return query == other.query && key_value == other.key_value && weighted_value == other.weighted_value;
  }
};

/// "qqt", "sst", "ktk", "vtv".
const char* covariance_name(Covariance covariance);
/// "k", "v": the file-name prefix of each target.
const char* target_prefix(Target target);
Granularity parse_granularity(const std::string& name);

/// The data-driven methods and what they fit: qqt_sst -> {K: qqt, V: sst}, qqt -> {K: qqt}, ...
/// Throws std::invalid_argument for an unknown name (and for "hadamard", which fits nothing).
std::vector<FittingTarget> method_targets(const std::string& method);
/// Every method name the CLI accepts, "hadamard" last.
const std::vector<std::string>& method_names();

StatisticsMask statistics_for(const std::vector<FittingTarget>& targets);

}  // namespace oscar::calib
