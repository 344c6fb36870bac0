// oscar-verify's results: per-method summaries pooled over the evaluation files, the budget gate, and the
// three renderings (a table for stdout, JSON, Markdown).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "verify/evaluation.h"
#include "verify/statistics.h"

namespace oscar::verify {

/// One method pooled over all files. Accuracy figures are percent; drops and flips are against fp.
struct MethodSummary {
  std::string name;
  std::int64_t text_tokens = 0;
  double perplexity = 0, kl_mean = 0, kl_max = 0, top1_agreement = 0;  ///< text positions
  int questions = 0;
  double accuracy = 0;
  DropInterval drop;          ///< fp accuracy − this accuracy, with the paired-bootstrap 95% interval
  double flip_rate = 0;       ///< % of questions answered differently from fp
  double answer_kl_mean = 0;  ///< KL(fp ‖ method) at the answer position (log-likelihood scoring)
  double bits_per_element = 0;///< stored bits per KV element over the evaluated sequences
};

struct SummaryOptions {
  int bootstrap_resamples = 1000;
  std::uint64_t seed = 0;
};

/// Needs `fp` among the methods (drops and flips are measured against it); names are the scorers' methods.
std::vector<MethodSummary> summarize(const EvaluationResult& result, const std::vector<std::string>& names,
                                     const SummaryOptions& options);

struct Budget {
  std::optional<double> max_drop;  ///< accuracy points
  std::optional<double> max_kl;    ///< nats per token (text; answer positions when there is no text)
};

/// The budget's verdict on the gated methods ("oscar" when evaluated, otherwise every method but fp): one line
/// per exceeded limit, empty when within budget.
std::vector<std::string> check_budget(const std::vector<MethodSummary>& summaries, const Budget& budget);

/// A fixed-width table of the summaries, for stdout.
std::string summary_table(const std::vector<MethodSummary>& summaries);

nlohmann::json summary_json(const MethodSummary& summary);
nlohmann::json dataset_json(const DatasetResult& dataset, const std::vector<std::string>& names);

/// A Markdown report: what was run (`header` lines), the summary table, per-file figures and the verdict.
std::string markdown_report(const std::vector<std::string>& header, const std::vector<MethodSummary>& summaries,
                            const EvaluationResult& result, const std::vector<std::string>& names,
                            const std::vector<std::string>& violations);

}  // namespace oscar::verify
