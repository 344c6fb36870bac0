// Calibrating models end to end: sequences from data files, the statistics checked against q captured
// independently from plain forwards, rotation files PyTorch loads, the tag directory, calibration.json,
// the optional HDF5 dump, and the oscar-calibrate binary on both bundled models.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "calib/head_statistics.h"
#include "io/hdf5_dump.h"
#include "io/rotation_set.h"
#include "model/decoder.h"
#include "model/model_loader.h"
#include "pipeline/calibration_sequences.h"
#include "pipeline/model_calibration.h"

using namespace oscar;
using namespace oscar::model;
using namespace oscar::pipeline;
namespace fs = std::filesystem;

namespace {

const std::string kData = OSCAR_SHARED_DATA;
const std::string kStoriesPath = kData + "/models/stories260K/stories260K.bin";
const std::string kStoriesTokenizer = kData + "/models/stories260K/tok512.bin";
const std::string k656kDir = kData + "/models/tinystories-656k";
const std::string kSamplePath = kData + "/text/tinystories_sample.txt";
const std::string kArcPath = kData + "/eval/arc_challenge_test.jsonl";
constexpr int kTokens = 1500;
constexpr int kSeqLen = 128;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("oscar_model_calibration_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

std::vector<std::vector<int>> token_lists(const std::vector<CalibrationSequence>& sequences) {
  std::vector<std::vector<int>> lists;
  for (const auto& sequence : sequences) lists.push_back(sequence.tokens);
  return lists;
}

/// Keeps every layer's q per sequence (the tensors are only valid during the call).
struct QuerySink : CaptureSink {
  std::map<int, std::vector<at::Tensor>> queries;
  void on_layer(int layer, int, const at::Tensor& q, const at::Tensor&, const at::Tensor&) override {
    queries[layer].push_back(q.to(at::kDouble).clone());
  }
};

void expect_orthogonal_rotations(const io::RotationSet& rotations, int layers, int d) {
  ASSERT_EQ(int(rotations.layers.size()), layers);
  for (const io::LayerRotation& layer : rotations.layers) {
    ASSERT_EQ(layer.head_dim, d);
    ASSERT_EQ(layer.rotation.size(), std::size_t(d * d));
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j < d; ++j) {
        double dot = 0.0;
        for (int k = 0; k < d; ++k) dot += double(layer.rotation[i * d + k]) * layer.rotation[j * d + k];
        EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-5) << "layer " << layer.layer_id << " (" << i << ", " << j << ")";
      }
    }
  }
}

int run_shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// The single tag directory an oscar-calibrate run created inside `out`.
fs::path only_subdirectory(const fs::path& out) {
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(out)) {
    if (entry.is_directory()) dirs.push_back(entry.path());
  }
  EXPECT_EQ(dirs.size(), 1u);
  return dirs.empty() ? out : dirs.front();
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

}  // namespace

TEST(ModelCalibration, TextSequencesAreBosLedWindowsWithinBudget) {
  const LoadedModel model = load_model(kStoriesPath, kStoriesTokenizer);
  const auto sequences = build_calibration_sequences(*model.tokenizer, ChatTemplate::kNone, {kSamplePath}, {kTokens, 0, kSeqLen});
  ASSERT_GT(sequences.size(), 5u);  // five stories, several windows
  for (const auto& sequence : sequences) {
    EXPECT_EQ(sequence.tokens.front(), 1) << sequence.source;  // BOS
    EXPECT_LE(int(sequence.tokens.size()), kSeqLen);
  }
  EXPECT_EQ(total_tokens(sequences), kTokens);  // the sample holds more than kTokens tokens: cut exactly
  // --max-prompts 2: only the first two stories.
  const auto two = build_calibration_sequences(*model.tokenizer, ChatTemplate::kNone, {kSamplePath}, {kTokens, 2, kSeqLen});
  for (const auto& sequence : two) EXPECT_TRUE(sequence.source.find(":0#") != std::string::npos || sequence.source.find(":1#") != std::string::npos) << sequence.source;
}

TEST(ModelCalibration, BatchedQueryCovarianceMatchesDirectlyCapturedQueries) {
  const LoadedModel model = load_model(kStoriesPath, kStoriesTokenizer);
  const auto sequences = token_lists(build_calibration_sequences(*model.tokenizer, ChatTemplate::kNone, {kSamplePath}, {kTokens, 0, kSeqLen}));
  Decoder decoder(model.config, model.weights);
  // Batches of 3 rows of different lengths (the last window of each story is short) exercise the padding.
  const calib::CalibrationState state = accumulate_model_statistics(decoder, sequences, "qqt_sst", 3);

  QuerySink sink;
  for (const auto& sequence : sequences) {
    decoder.reset();
    decoder.forward(sequence, &sink);
  }
  const int hq = decoder.config().n_heads, hkv = decoder.config().n_kv_heads, g = hq / hkv;
  ASSERT_EQ(int(sink.queries.size()), decoder.config().n_layers);
  for (const auto& [layer, chunks] : sink.queries) {
    const at::Tensor q = at::cat(chunks, 0);  // [T, Hq, d]
    for (int h = 0; h < hkv; ++h) {
      // Mean over tokens and the g query heads of the group of q·qᵀ, in double.
      const at::Tensor group = q.narrow(1, h * g, g).reshape({-1, q.size(2)});
      const at::Tensor direct = at::matmul(group.t(), group) / double(group.size(0));
      const linalg::Matrix accumulated = calib::query_covariance(state.heads.at({layer, h}), g);
      double diff = 0.0, norm = 0.0;
      for (int i = 0; i < accumulated.rows(); ++i) {
        for (int j = 0; j < accumulated.cols(); ++j) {
          const double expected = direct[i][j].item<double>();
          diff += std::pow(accumulated(i, j) - expected, 2);
          norm += expected * expected;
        }
      }
      // Batched and single-sequence forwards run different matmul shapes: float32 rounding differs slightly.
      EXPECT_LE(std::sqrt(diff / norm), 1e-5) << "layer " << layer << " kv head " << h;
    }
  }
}

TEST(ModelCalibration, LibraryWritesTagDirectoryRecordAndDump) {
  const fs::path out = fresh_dir("lib");
  ModelCalibrationRequest request;
  request.model_path = kStoriesPath;
  request.data_paths = {kSamplePath};
  request.budget = {kTokens, 0, kSeqLen};
  request.out_dir = out.string();
  request.progress = false;
  request.dump_path = (out / "dump.h5").string();
  const std::string tag_dir = run_model_calibration(request);

  const nlohmann::json record = read_json(fs::path(tag_dir) / "calibration.json");
  const std::int64_t prompts = record["prompts"];
  EXPECT_EQ(record["tokens"], kTokens);
  EXPECT_EQ(fs::path(tag_dir).filename().string(), "seq" + std::to_string(kTokens) + "_prompt" + std::to_string(prompts) + "_group8");
  EXPECT_EQ(record["model"]["architecture"], "llama");
  EXPECT_EQ(record["model"]["format"], "llama2c");
  EXPECT_EQ(record["model"]["num_layers"], 5);
  EXPECT_EQ(record["inputs"].size(), 3u);  // model, tokenizer, data
  expect_orthogonal_rotations(io::read_rotation_set(tag_dir + "/k_rotation_qqt_r_h_pbr.pt"), 5, 8);
  expect_orthogonal_rotations(io::read_rotation_set(tag_dir + "/v_rotation_sst_r_h_pbr.pt"), 5, 8);

  const io::Hdf5Dump dump(request.dump_path, {});
  ASSERT_EQ(dump.layer_ids().size(), 5u);
  std::int64_t dumped = 0;
  for (int chunk : dump.chunk_ids(0)) dumped += dump.chunk_tokens(0, chunk);
  EXPECT_EQ(dumped, kTokens);
  EXPECT_EQ(std::int64_t(dump.chunk_ids(4).size()), prompts);
  fs::remove_all(out);
}

TEST(ModelCalibration, CommandLineCalibratesStories260KAndTorchLoadsTheFiles) {
  const fs::path out = fresh_dir("cli");
  const std::string calibrate = std::string(OSCAR_CALIBRATE_BIN) + " -q --model " + kStoriesPath + " --data " + kSamplePath +
                                " --tokens 1000 --seq-len 128";
  ASSERT_EQ(run_shell(calibrate + " --out " + out.string()), 0);
  const fs::path tag_dir = only_subdirectory(out);
  const std::string script =
      "import sys, torch\n"
      "for name in ('k_rotation_qqt_r_h_pbr.pt', 'v_rotation_sst_r_h_pbr.pt'):\n"
      "    zoo = torch.load(sys.argv[1] + '/' + name, weights_only=True)\n"
      "    assert sorted(zoo['layers']) == [0, 1, 2, 3, 4], name\n"
      "    for i in range(5):\n"
      "        r = zoo['layers'][i]['rotation'].double()\n"
      "        assert r.shape == (8, 8), name\n"
      "        assert torch.allclose(r.T @ r, torch.eye(8, dtype=torch.float64), atol=1e-5), name\n";
  const fs::path script_path = out / "check.py";
  { std::ofstream(script_path) << script; }
  EXPECT_EQ(run_shell(std::string(OSCAR_SYSTEM_PYTHON) + " " + script_path.string() + " " + tag_dir.string()), 0);
  EXPECT_EQ(run_shell(calibrate + " --from-dump " + out.string() + " --out " + out.string() + "/x 2>/dev/null"), 2);
  fs::remove_all(out);
}

TEST(ModelCalibration, CommandLineCalibrates656KOnMultipleChoiceWithGeneration) {
  // The Hugging Face copy of TinyStories-656K, ARC questions in the simple-evals template (no chat template:
  // the model has none), 6 generated tokens appended to each prompt and captured too.
  const fs::path out = fresh_dir("656k");
  const std::string command = std::string(OSCAR_CALIBRATE_BIN) + " -q --model " + k656kDir + " --data " + kArcPath +
                              " --max-prompts 5 --generate 6 --tokens 100000 --batch 2 --out " + out.string();
  ASSERT_EQ(run_shell(command), 0);
  const fs::path tag_dir = only_subdirectory(out);
  const nlohmann::json record = read_json(tag_dir / "calibration.json");
  EXPECT_EQ(record["prompts"], 5);
  EXPECT_EQ(record["model"]["format"], "huggingface");
  EXPECT_EQ(record["model"]["head_dim"], 16);
  EXPECT_EQ(record["model"]["chat_template"], "none");
  EXPECT_EQ(tag_dir.filename().string(), "seq" + std::to_string(record["tokens"].get<std::int64_t>()) + "_prompt5_group16");
  expect_orthogonal_rotations(io::read_rotation_set((tag_dir / "k_rotation_qqt_r_h_pbr.pt").string()), 2, 16);
  expect_orthogonal_rotations(io::read_rotation_set((tag_dir / "v_rotation_sst_r_h_pbr.pt").string()), 2, 16);
  // Each ARC prompt in the template is well over 60 tokens; 6 generated tokens each on top.
  EXPECT_GT(record["tokens"].get<std::int64_t>(), 5 * 66);
  fs::remove_all(out);
}

TEST(ModelCalibration, BadModelPathIsOneLineErrorAndNoOutput) {
  const fs::path out = fresh_dir("bad");
  EXPECT_EQ(run_shell(std::string(OSCAR_CALIBRATE_BIN) + " -q --model " + kSamplePath + " --data " + kSamplePath + " --out " +
                      out.string() + " 2>/dev/null"),
            1);
  EXPECT_FALSE(fs::exists(out));
}
