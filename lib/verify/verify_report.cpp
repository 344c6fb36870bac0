#include "verify/verify_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace oscar::verify {
namespace {

std::string format(const char* pattern, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, pattern, value);
  return buffer;
}

/// Per-question correctness of one method, pooled over the multiple-choice files in order.
std::vector<int> pooled_correct(const EvaluationResult& result, size_t method) {
  std::vector<int> correct;
  for (const DatasetResult& dataset : result.datasets) {
    const auto& predicted = dataset.methods[method].predicted;
    for (size_t q = 0; q < predicted.size(); ++q) correct.push_back(predicted[q] == dataset.answers[q] ? 1 : 0);
  }
  return correct;
}

std::vector<int> pooled_predictions(const EvaluationResult& result, size_t method) {
  std::vector<int> predicted;
  for (const DatasetResult& dataset : result.datasets) {
    predicted.insert(predicted.end(), dataset.methods[method].predicted.begin(), dataset.methods[method].predicted.end());
  }
  return predicted;
}

double mean(double sum, std::int64_t count) { return count > 0 ? sum / static_cast<double>(count) : 0.0; }

bool gated(const std::vector<MethodSummary>& summaries, const MethodSummary& summary) {
  const bool has_oscar = std::any_of(summaries.begin(), summaries.end(), [](const auto& s) { return s.name == "oscar"; });
  return has_oscar ? summary.name == "oscar" : summary.name != "fp";
}

}  // namespace

std::vector<MethodSummary> summarize(const EvaluationResult& result, const std::vector<std::string>& names,
                                     const SummaryOptions& options) {
  const auto fp = std::find(names.begin(), names.end(), "fp");
  if (fp == names.end()) throw std::invalid_argument("summarize: fp is not among the methods");
  const size_t reference = static_cast<size_t>(fp - names.begin());
  const std::vector<int> reference_correct = pooled_correct(result, reference);
  const std::vector<int> reference_predicted = pooled_predictions(result, reference);
  std::vector<MethodSummary> summaries;
  for (size_t m = 0; m < names.size(); ++m) {
    MethodSummary summary;
    summary.name = names[m];
    double nll = 0, text_kl = 0, answer_kl = 0, bits = 0;
    std::int64_t text_positions = 0, answer_positions = 0, agree = 0, stored_tokens = 0;
    for (const DatasetResult& dataset : result.datasets) {
      const MethodMetrics& metrics = dataset.methods[m];
      (dataset.multiple_choice ? answer_kl : text_kl) += metrics.kl_sum;
      (dataset.multiple_choice ? answer_positions : text_positions) += metrics.kl_positions;
      if (!dataset.multiple_choice) {
        summary.kl_max = std::max(summary.kl_max, metrics.kl_max);
        agree += metrics.top1_agree;
      }
      nll += metrics.nll_sum;
      summary.text_tokens += metrics.text_tokens;
      bits += metrics.stored_bits;
      stored_tokens += metrics.stored_tokens;
    }
    summary.perplexity = summary.text_tokens > 0 ? std::exp(nll / static_cast<double>(summary.text_tokens)) : 0.0;
    summary.kl_mean = mean(text_kl, text_positions);
    summary.top1_agreement = 100.0 * mean(static_cast<double>(agree), text_positions);
    summary.answer_kl_mean = mean(answer_kl, answer_positions);
    summary.bits_per_element = mean(bits, stored_tokens);
    const std::vector<int> correct = pooled_correct(result, m);
    const std::vector<int> predicted = pooled_predictions(result, m);
    summary.questions = static_cast<int>(correct.size());
    long right = 0, flips = 0;
    for (size_t q = 0; q < correct.size(); ++q) {
      right += correct[q];
      flips += predicted[q] != reference_predicted[q] ? 1 : 0;
    }
    summary.accuracy = 100.0 * mean(static_cast<double>(right), summary.questions);
    summary.flip_rate = 100.0 * mean(static_cast<double>(flips), summary.questions);
    summary.drop = paired_bootstrap_drop(reference_correct, correct, options.bootstrap_resamples, options.seed);
    summaries.push_back(summary);
  }
  return summaries;
}

std::vector<std::string> check_budget(const std::vector<MethodSummary>& summaries, const Budget& budget) {
  std::vector<std::string> violations;
  for (const MethodSummary& summary : summaries) {
    if (!gated(summaries, summary)) continue;
    if (budget.max_drop && summary.questions > 0 && summary.drop.drop > *budget.max_drop) {
      violations.push_back(summary.name + ": accuracy drop " + format("%.2f", summary.drop.drop) + " points > --max-drop " +
                           format("%g", *budget.max_drop));
    }
    const double kl = summary.text_tokens > 0 ? summary.kl_mean : summary.answer_kl_mean;
    if (budget.max_kl && kl > *budget.max_kl) {
      violations.push_back(summary.name + ": KL " + format("%.5f", kl) + " nats > --max-kl " + format("%g", *budget.max_kl));
    }
  }
  return violations;
}

std::string summary_table(const std::vector<MethodSummary>& summaries) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-16s %6s %10s %10s %8s %6s %8s %18s %7s\n", "method", "bits", "ppl", "KL", "top1%",
                "n", "acc%", "drop [95% CI]", "flip%");
  out << line;
  for (const MethodSummary& s : summaries) {
    const bool text = s.text_tokens > 0, choice = s.questions > 0;
    const std::string drop = choice ? format("%+.1f", s.drop.drop) + " [" + format("%.1f", s.drop.low) + "," + format("%.1f", s.drop.high) + "]" : "-";
    std::snprintf(line, sizeof line, "%-16s %6.2f %10s %10.6f %8s %6d %8s %18s %7s\n", s.name.c_str(), s.bits_per_element,
                  text ? format("%.4f", s.perplexity).c_str() : "-", text ? s.kl_mean : s.answer_kl_mean,
                  text ? format("%.2f", s.top1_agreement).c_str() : "-", s.questions,
                  choice ? format("%.2f", s.accuracy).c_str() : "-", drop.c_str(), choice ? format("%.2f", s.flip_rate).c_str() : "-");
    out << line;
  }
  return out.str();
}

nlohmann::json summary_json(const MethodSummary& s) {
  return {{"method", s.name},
          {"bits_per_element", s.bits_per_element},
          {"text", {{"tokens", s.text_tokens}, {"perplexity", s.perplexity}, {"kl_mean", s.kl_mean}, {"kl_max", s.kl_max},
                    {"top1_agreement", s.top1_agreement}}},
          {"multiple_choice", {{"questions", s.questions}, {"accuracy", s.accuracy}, {"drop", s.drop.drop},
                               {"drop_ci95", {s.drop.low, s.drop.high}}, {"flip_rate", s.flip_rate},
                               {"answer_kl_mean", s.answer_kl_mean}}}};
}

nlohmann::json dataset_json(const DatasetResult& dataset, const std::vector<std::string>& names) {
  nlohmann::json json = {{"path", dataset.path}, {"kind", dataset.multiple_choice ? "multiple_choice" : "text"}};
  if (dataset.multiple_choice) {
    json["questions"] = dataset.answers.size();
    json["skipped_too_long"] = dataset.skipped;
  } else {
    json["windows"] = dataset.windows;
  }
  nlohmann::json methods = nlohmann::json::object();
  for (size_t m = 0; m < names.size(); ++m) {
    const MethodMetrics& metrics = dataset.methods[m];
    nlohmann::json entry = {{"bits_per_element", mean(metrics.stored_bits, metrics.stored_tokens)},
                            {"kl_mean", mean(metrics.kl_sum, metrics.kl_positions)}};
    if (dataset.multiple_choice) {
      long right = 0;
      for (size_t q = 0; q < metrics.predicted.size(); ++q) right += metrics.predicted[q] == dataset.answers[q] ? 1 : 0;
      entry["accuracy"] = 100.0 * mean(static_cast<double>(right), static_cast<std::int64_t>(metrics.predicted.size()));
      entry["predicted"] = metrics.predicted;
    } else {
      entry["tokens"] = metrics.text_tokens;
      entry["perplexity"] = std::exp(mean(metrics.nll_sum, metrics.text_tokens));
      entry["top1_agreement"] = 100.0 * mean(static_cast<double>(metrics.top1_agree), metrics.kl_positions);
    }
    methods[names[m]] = entry;
  }
  json["methods"] = methods;
  return json;
}

std::string markdown_report(const std::vector<std::string>& header, const std::vector<MethodSummary>& summaries,
                            const EvaluationResult& result, const std::vector<std::string>& names,
                            const std::vector<std::string>& violations) {
  std::ostringstream out;
  out << "# oscar-verify report\n\n";
  for (const std::string& line : header) out << "- " << line << "\n";
  out << "\n| method | bits/elem | perplexity | KL(fp‖method) | top-1 agree % | questions | accuracy % | drop (95% CI) | flip % |\n";
  out << "|---|---|---|---|---|---|---|---|---|\n";
  for (const MethodSummary& s : summaries) {
    out << "| " << s.name << " | " << format("%.2f", s.bits_per_element) << " | "
        << (s.text_tokens > 0 ? format("%.4f", s.perplexity) : "-") << " | "
        << format("%.6f", s.text_tokens > 0 ? s.kl_mean : s.answer_kl_mean) << " | "
        << (s.text_tokens > 0 ? format("%.2f", s.top1_agreement) : "-") << " | " << s.questions << " | "
        << (s.questions > 0 ? format("%.2f", s.accuracy) : "-") << " | "
        << (s.questions > 0 ? format("%+.2f", s.drop.drop) + " [" + format("%.2f", s.drop.low) + ", " + format("%.2f", s.drop.high) + "]" : "-")
        << " | " << (s.questions > 0 ? format("%.2f", s.flip_rate) : "-") << " |\n";
  }
  out << "\n## Per file\n\n";
  for (const DatasetResult& dataset : result.datasets) {
    out << "- `" << dataset.path << "`: "
        << (dataset.multiple_choice ? std::to_string(dataset.answers.size()) + " questions (" + std::to_string(dataset.skipped) + " too long, skipped)"
                                    : std::to_string(dataset.windows) + " windows");
    const nlohmann::json json = dataset_json(dataset, names);
    for (const std::string& name : names) {
      const auto& entry = json["methods"][name];
      out << "; " << name << " "
          << (dataset.multiple_choice ? "acc " + format("%.2f", entry["accuracy"].get<double>())
                                      : "ppl " + format("%.4f", entry["perplexity"].get<double>()))
          << " KL " << format("%.6f", entry["kl_mean"].get<double>());
    }
    out << "\n";
  }
  out << "\n## Verdict\n\n";
  if (violations.empty()) out << "Within budget.\n";
  for (const std::string& line : violations) out << "- over budget: " << line << "\n";
  return out.str();
}

}  // namespace oscar::verify
