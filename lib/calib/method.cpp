#include "calib/method.h"

#include <stdexcept>

namespace oscar::calib {

const char* covariance_name(Covariance covariance) {
  switch (covariance) {
    case Covariance::kQqt: return "qqt";
    case Covariance::kSst: return "sst";
    case Covariance::kKtk: return "ktk";
    case Covariance::kVtv: return "vtv";
  }
  return "?";
}

const char* target_prefix(Target target) { return target == Target::kKey ? "k" : "v"; }

Granularity parse_granularity(const std::string& name) {
  if (name == "layer") return Granularity::kLayer;
  if (name == "kv-head") return Granularity::kKvHead;
  throw std::invalid_argument("unknown granularity '" + name + "' (choose layer|kv-head)");
}

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = {"qqt_sst", "ktk_vtv", "qqt", "sst", "ktk", "vtv", "hadamard"};
  return names;
}

std::vector<FittingTarget> method_targets(const std::string& method) {
  const FittingTarget qqt{Target::kKey, Covariance::kQqt};
  const FittingTarget sst{Target::kValue, Covariance::kSst};
  const FittingTarget ktk{Target::kKey, Covariance::kKtk};
  const FittingTarget vtv{Target::kValue, Covariance::kVtv};
  if (method == "qqt_sst") return {qqt, sst};
  if (method == "ktk_vtv") return {ktk, vtv};
  if (method == "qqt") return {qqt};
  if (method == "sst") return {sst};
  if (method == "ktk") return {ktk};
  if (method == "vtv") return {vtv};
  throw std::invalid_argument("method '" + method + "' has no covariance targets");
}

StatisticsMask statistics_for(const std::vector<FittingTarget>& targets) {
  StatisticsMask mask;
  for (const auto& target : targets) {
    switch (target.covariance) {
      case Covariance::kQqt: mask.query = true; break;
      case Covariance::kSst: mask.query = mask.weighted_value = true; break;
      case Covariance::kKtk:
      case Covariance::kVtv: mask.key_value = true; break;
    }
  }
  return mask;
}

}  // namespace oscar::calib
