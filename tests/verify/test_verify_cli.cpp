// The oscar-verify binary on the bundled stories260K model: fp against itself, the budget gate's exit codes,
// bad input (exit 2, one line naming the file, no report), reports, and generation-based answers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../io/io_test_support.h"

namespace {

namespace fs = std::filesystem;
using oscar::test::run_command;
using oscar::test::shell_quote;
using oscar::test::TempDir;

const std::string kData = OSCAR_SHARED_DATA;
const std::string kModel = kData + "/models/stories260K/stories260K.bin";
const std::string kSample = kData + "/text/tinystories_sample.txt";
const std::string kArc = kData + "/eval/arc_challenge_test.jsonl";

struct VerifyRun {
  int status = -1;
  std::string err;
};

VerifyRun verify(const TempDir& dir, const std::string& arguments) {
  const std::string err = dir / "stderr.txt";
  VerifyRun run;
  run.status = run_command(shell_quote(OSCAR_VERIFY_BIN) + " --model " + shell_quote(kModel) + " -q " + arguments +
                           " > " + shell_quote(dir / "stdout.txt") + " 2> " + shell_quote(err));
  std::ifstream in(err);
  run.err.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return run;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

const nlohmann::json& summary_of(const nlohmann::json& report, const std::string& method) {
  for (const auto& entry : report["summary"]) {
    if (entry["method"] == method) return entry;
  }
  throw std::runtime_error("no summary for " + method);
}

TEST(VerifyCli, FullPrecisionAgainstItself) {
  TempDir dir;
  const VerifyRun run = verify(dir, "--methods fp --eval " + shell_quote(kSample) + " " + shell_quote(kArc) +
                                  " --limit 6 --report " + shell_quote(dir / "r.json") + " --markdown " + shell_quote(dir / "r.md"));
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json report = read_json(dir / "r.json");
  const auto& fp = summary_of(report, "fp");
  EXPECT_GT(fp["text"]["tokens"].get<int>(), 500);
  EXPECT_EQ(fp["text"]["kl_mean"].get<double>(), 0.0);
  EXPECT_EQ(fp["text"]["top1_agreement"].get<double>(), 100.0);
  EXPECT_EQ(fp["multiple_choice"]["questions"].get<int>(), 6);
  EXPECT_EQ(fp["multiple_choice"]["drop"].get<double>(), 0.0);
  EXPECT_EQ(fp["multiple_choice"]["flip_rate"].get<double>(), 0.0);
  EXPECT_EQ(fp["bits_per_element"].get<double>(), 16.0);
  EXPECT_TRUE(report["budget"]["within_budget"].get<bool>());
  EXPECT_EQ(report["eval_files"].size(), 2U);
  EXPECT_EQ(report["eval_files"][0]["sha256"].get<std::string>().size(), 64U);
  EXPECT_TRUE(fs::exists(dir / "r.md"));
}

TEST(VerifyCli, BudgetGateExitCodes) {
  TempDir dir;
  const std::string common = "--methods fp,naive --sink 8 --recent 16 --eval " + shell_quote(kSample);
  const VerifyRun over = verify(dir, common + " --max-kl 1e-9 --report " + shell_quote(dir / "over.json"));
  EXPECT_EQ(over.status, 1) << over.err;
  EXPECT_NE(over.err.find("over budget: naive: KL"), std::string::npos) << over.err;
  const nlohmann::json report = read_json(dir / "over.json");  // the report is still written
  EXPECT_FALSE(report["budget"]["within_budget"].get<bool>());
  const double kl = summary_of(report, "naive")["text"]["kl_mean"].get<double>();
  EXPECT_GT(kl, 1e-3);
  const VerifyRun within = verify(dir, common + " --max-kl " + std::to_string(kl * 1.01) + " --max-drop 100");
  EXPECT_EQ(within.status, 0) << within.err;
  const VerifyRun tight = verify(dir, common + " --max-kl " + std::to_string(kl * 0.99));
  EXPECT_EQ(tight.status, 1) << tight.err;
}

TEST(VerifyCli, BadInputExitsTwoWithOneLineAndNoReport) {
  TempDir dir;
  const std::string arc = dir / "broken.jsonl";
  std::ofstream(arc) << R"({"question": "Q?", "options": [{"label": "A", "text": "x"}, {"label": "B", "text": "y"}], "answer": "A"})"
                     << "\n{not json\n";
  const VerifyRun broken = verify(dir, "--methods fp --eval " + shell_quote(arc) + " --report " + shell_quote(dir / "r.json"));
  EXPECT_EQ(broken.status, 2);
  EXPECT_NE(broken.err.find(arc + ": line 2"), std::string::npos) << broken.err;
  EXPECT_EQ(std::count(broken.err.begin(), broken.err.end(), '\n'), 1) << broken.err;
  EXPECT_FALSE(fs::exists(dir / "r.json"));
  EXPECT_FALSE(fs::exists(dir / "r.json.tmp"));

  const VerifyRun no_rotations = verify(dir, "--methods fp,oscar --eval " + shell_quote(kSample));
  EXPECT_EQ(no_rotations.status, 2);
  EXPECT_NE(no_rotations.err.find("--rotations"), std::string::npos) << no_rotations.err;
  const VerifyRun missing = verify(dir, "--methods fp,oscar --rotations " + shell_quote(dir / "nowhere") + " --eval " + shell_quote(kSample));
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find(dir / "nowhere"), std::string::npos) << missing.err;
  EXPECT_EQ(verify(dir, "--methods fp,kivi --eval " + shell_quote(kSample)).status, 2);
  EXPECT_EQ(verify(dir, "--methods naive --sink 7 --eval " + shell_quote(kSample)).status, 2);
}

TEST(VerifyCli, ConfigFileSetsOptionsAndRefusesUnknownKeys) {
  TempDir dir;
  const std::string config = dir / "verify.toml", report = dir / "r.json";
  std::ofstream(config) << "methods = \"fp\"\neval = [\"" << kArc << "\"]\nlimit = 3\nreport = \"" << report << "\"\n";
  const VerifyRun run = verify(dir, "--config " + shell_quote(config));
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json written = read_json(report);
  ASSERT_EQ(written["summary"].size(), 1U);
  EXPECT_EQ(summary_of(written, "fp")["multiple_choice"]["questions"].get<int>(), 3);

  fs::remove(report);
  std::ofstream(config, std::ios::app) << "max-kll = 0.5\n";
  const VerifyRun misspelt = verify(dir, "--config " + shell_quote(config));
  EXPECT_EQ(misspelt.status, 2);
  EXPECT_EQ(misspelt.err, "oscar-verify: error: " + config + ": unknown key 'max-kll' (keys are long option names; see --help)\n");
  EXPECT_FALSE(fs::exists(report));
}

TEST(VerifyCli, GeneratedAnswersAreReproducible) {
  TempDir dir;
  const std::string arguments = "--methods fp,naive --sink 8 --recent 16 --generate 6 --limit 3 --eval " + shell_quote(kArc);
  ASSERT_EQ(verify(dir, arguments + " --report " + shell_quote(dir / "a.json")).status, 0);
  ASSERT_EQ(verify(dir, arguments + " --report " + shell_quote(dir / "b.json")).status, 0);
  const nlohmann::json a = read_json(dir / "a.json"), b = read_json(dir / "b.json");
  EXPECT_EQ(a["options"]["scoring"], "generate");
  EXPECT_EQ(a["datasets"][0]["methods"]["fp"]["predicted"].size(), 3U);
  EXPECT_EQ(a["datasets"], b["datasets"]);
  EXPECT_EQ(a["summary"], b["summary"]);
}

}  // namespace
