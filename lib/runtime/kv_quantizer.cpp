#include "runtime/kv_quantizer.h"

#include <stdexcept>

#include "runtime/baseline_quantizers.h"

namespace oscar::runtime {

std::vector<std::string> kv_quantizer_names() {
  return {"naive-sym", "naive-asym", "quarot", "kivi2", "turboquant", "eoptshrinkq"};
}

std::unique_ptr<KvQuantizer> make_kv_quantizer(const std::string& name, KvKind kind, const QuantizerOptions& options) {
  const Int2Config& int2 = kind == KvKind::kKey ? options.key_int2 : options.value_int2;
  if (options.group_size < 0) throw std::invalid_argument("quantizer group size must be >= 0 (0: d)");
  if (name == "naive-sym") return std::make_unique<NaiveSymmetricQuantizer>(options.group_size);
  if (name == "naive-asym") return std::make_unique<Int2FormatQuantizer>(int2, options.group_size, false);
  if (name == "quarot") return std::make_unique<Int2FormatQuantizer>(int2, options.group_size, true);
  if (name == "kivi2") {
    if (options.kivi_group < 1) throw std::invalid_argument("kivi group must be positive");
    return std::make_unique<KiviQuantizer>(kind, options.kivi_group, 2);
  }
  if (name == "turboquant") return std::make_unique<TurboQuantizer>(options.turboquant_bits, options.seed);
  if (name == "eoptshrinkq") {
    if (options.eoptshrinkq_max_rank < 0) throw std::invalid_argument("eoptshrinkq max rank must be >= 0 (0: none)");
    return std::make_unique<EOptShrinkQuantizer>(options.eoptshrinkq_residual_bits, options.seed,
                                                 options.eoptshrinkq_max_rank);
  }
  std::string known;
  for (const std::string& n : kv_quantizer_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown KV quantizer '" + name + "' (known: " + known + ")");
}

}  // namespace oscar::runtime
