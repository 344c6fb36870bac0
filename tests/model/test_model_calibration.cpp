// Calibrating stories260K end to end: through the library (rotation files, and the qqt statistics checked
// against q captured independently from the same forwards) and through the oscar-calibrate binary.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

#include "calib/head_statistics.h"
#include "io/rotation_set.h"
#include "model/decoder.h"
#include "model/llama2c_file.h"
#include "model/llama2c_tokenizer.h"
#include "model/model_calibration.h"

using namespace oscar;
using namespace oscar::model;
namespace fs = std::filesystem;

namespace {

const std::string kModelDir = std::string(OSCAR_SHARED_DATA) + "/models/stories260K";
const std::string kModelPath = kModelDir + "/stories260K.bin";
const std::string kTokenizerPath = kModelDir + "/tok512.bin";
const std::string kDataPath = std::string(OSCAR_SHARED_DATA) + "/text/tinystories_sample.txt";
constexpr int kTokens = 2000;
constexpr int kSeqLen = 128;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("oscar_model_calibration_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

std::vector<std::vector<int>> sample_sequences() {
  const Llama2cTokenizer tokenizer(kTokenizerPath, 512);
  return calibration_sequences(tokenizer, {kDataPath}, kTokens, kSeqLen);
}

/// Keeps every layer's q (the tensors are only valid during the call).
struct QuerySink : CaptureSink {
  std::map<int, std::vector<at::Tensor>> queries;
  void on_layer(int layer, const at::Tensor& q, const at::Tensor&, const at::Tensor&) override {
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

}  // namespace

TEST(ModelCalibration, SequencesAreConsecutiveWindowsStartingWithBos) {
  const auto sequences = sample_sequences();
  ASSERT_FALSE(sequences.empty());
  EXPECT_EQ(sequences.front().front(), Llama2cTokenizer::kBos);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    if (i + 1 < sequences.size()) EXPECT_EQ(int(sequences[i].size()), kSeqLen);
    EXPECT_LE(int(sequences[i].size()), kSeqLen);
    total += std::int64_t(sequences[i].size());
  }
  EXPECT_LE(total, kTokens);
}

TEST(ModelCalibration, WritesOrthogonalRotationsForEveryLayer) {
  const fs::path out = fresh_dir("lib");
  ModelCalibrationRequest request;
  request.model_path = kModelPath;
  request.tokenizer_path = kTokenizerPath;
  request.data_paths = {kDataPath};
  request.max_tokens = kTokens;
  request.seq_len = kSeqLen;
  request.out_dir = out.string();
  run_model_calibration(request);

  expect_orthogonal_rotations(io::read_rotation_set((out / "k_rotation_qqt_r_h_pbr.pt").string()), 5, 8);
  expect_orthogonal_rotations(io::read_rotation_set((out / "v_rotation_sst_r_h_pbr.pt").string()), 5, 8);
  EXPECT_TRUE(fs::exists(out / "calibration.json"));
  fs::remove_all(out);
}

TEST(ModelCalibration, QueryCovarianceMatchesDirectlyCapturedQueries) {
  const auto sequences = sample_sequences();
  Decoder decoder(load_llama2c(kModelPath));
  const calib::CalibrationState state = accumulate_model_statistics(decoder, sequences, "qqt_sst");

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
      EXPECT_LE(std::sqrt(diff / norm), 1e-10) << "layer " << layer << " kv head " << h;
    }
  }
}

TEST(ModelCalibration, CommandLineWritesFilesTorchLoads) {
  const fs::path out = fresh_dir("cli");
  const std::string calibrate = std::string(OSCAR_CALIBRATE_BIN) + " -q --model " + kModelPath + " --tokenizer " +
                                kTokenizerPath + " --data " + kDataPath + " --tokens 2000 --seq-len 128";
  ASSERT_EQ(run_shell(calibrate + " --out " + out.string()), 0);
  const std::string script =
      "import sys, torch\n"
      "for name in ('k_rotation_qqt_r_h_pbr.pt', 'v_rotation_sst_r_h_pbr.pt'):\n"
      "    zoo = torch.load(sys.argv[1] + '/' + name, weights_only=True)\n"
      "    assert sorted(zoo['layers']) == [0, 1, 2, 3, 4], name\n"
      "    assert all(zoo['layers'][i]['rotation'].shape == (8, 8) for i in range(5)), name\n";
  const fs::path script_path = out / "check.py";
  { std::ofstream(script_path) << script; }
  EXPECT_EQ(run_shell(std::string(OSCAR_SYSTEM_PYTHON) + " " + script_path.string() + " " + out.string()), 0);
  EXPECT_EQ(run_shell(calibrate + " --from-dump " + out.string() + " --out " + out.string() + "/x 2>/dev/null"), 2);
  fs::remove_all(out);
}
