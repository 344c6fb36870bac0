#include "model/llama2c_file.h"

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace oscar::model {
namespace {

constexpr int kHeaderInts = 7;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw InputError(path + ": " + problem);
}

/// The header's checks: every later size is a product of these numbers, so nonsense here would turn into a
/// huge allocation or a wrong stride instead of a clear message.
ModelConfig parse_header(const std::string& path, const int32_t (&h)[kHeaderInts]) {
  ModelConfig c;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.tied_embeddings = h[5] > 0;  // llama2.c marks an unshared classifier by a negative vocabulary size
  c.vocab_size = h[5] == INT32_MIN ? 0 : std::abs(h[5]);  // INT32_MIN has no absolute value
  c.max_seq_len = h[6];
  c.rope_style = RopeStyle::kInterleaved;
  c.rope_theta = 1e4;
  c.rms_eps = 1e-5f;
  c.bos_token = 1;
  c.eos_token = 2;
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.vocab_size <= 0 || c.max_seq_len <= 0)
    fail(path, "not a llama2.c checkpoint (header has a non-positive size)");
  if (c.dim % c.n_heads != 0) fail(path, "dim " + std::to_string(c.dim) + " is not a multiple of n_heads");
  if (c.n_heads % c.n_kv_heads != 0) fail(path, "n_heads is not a multiple of n_kv_heads");
  c.head_dim = c.dim / c.n_heads;
  if (c.head_dim % 2 != 0) fail(path, "odd head_dim " + std::to_string(c.head_dim) + " (RoPE needs pairs)");
  return c;
}

/// Float counts of every stored tensor, in file order (freq_cis_real/imag included: they are skipped, but
/// they are part of the expected size).
struct Layout {
  int64_t embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis, classifier;
  int64_t total_floats() const {
    return embedding + rms_att + wq + wk + wv + wo + rms_ffn + w1 + w2 + w3 + rms_final + 2 * freq_cis + classifier;
  }
};

Layout layout_of(const ModelConfig& c) {
  const int64_t L = c.n_layers, dim = c.dim, kv = c.kv_dim(), hid = c.hidden_dim, V = c.vocab_size;
  return Layout{V * dim,   L * dim,   L * dim * dim, L * dim * kv,
                L * dim * kv, L * dim * dim, L * dim, L * hid * dim,
                L * dim * hid, L * hid * dim, dim, int64_t{c.max_seq_len} * c.head_dim / 2,
                c.tied_embeddings ? 0 : V * dim};
}

std::vector<float> read_floats(std::ifstream& in, int64_t count) {
  std::vector<float> v(static_cast<size_t>(count));
  in.read(reinterpret_cast<char*>(v.data()), count * static_cast<int64_t>(sizeof(float)));
  return v;
}

}  // namespace

Llama2cModel load_llama2c(const std::string& path) {
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot open (" + ec.message() + ")");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  int32_t header[kHeaderInts];
  if (file_size < sizeof(header)) fail(path, "truncated header (" + std::to_string(file_size) + " bytes)");
  in.read(reinterpret_cast<char*>(header), sizeof(header));

  Llama2cModel m;
  m.config = parse_header(path, header);
  const Layout lay = layout_of(m.config);
  // Checked before any allocation: an exact match, because the format has no trailer and a longer file
  // usually means a different format version (llama2.c v1/v2 start with a magic that parses as garbage).
  const int64_t expected = static_cast<int64_t>(sizeof(header)) + lay.total_floats() * 4;
  if (static_cast<int64_t>(file_size) != expected)
    fail(path, "size " + std::to_string(file_size) + " bytes does not match the header's geometry (expected " +
                   std::to_string(expected) + ")");

  Llama2cWeights& w = m.weights;
  w.token_embedding = read_floats(in, lay.embedding);
  w.rms_att = read_floats(in, lay.rms_att);
  w.wq = read_floats(in, lay.wq);
  w.wk = read_floats(in, lay.wk);
  w.wv = read_floats(in, lay.wv);
  w.wo = read_floats(in, lay.wo);
  w.rms_ffn = read_floats(in, lay.rms_ffn);
  w.w1 = read_floats(in, lay.w1);
  w.w2 = read_floats(in, lay.w2);
  w.w3 = read_floats(in, lay.w3);
  w.rms_final = read_floats(in, lay.rms_final);
  // RoPE tables: recomputed in the forward from theta, as every other format only stores theta.
  in.seekg(lay.freq_cis * 2 * 4, std::ios::cur);
  if (!m.config.tied_embeddings) w.classifier = read_floats(in, lay.classifier);
  if (!in) fail(path, "read error");
  return m;
}

}  // namespace oscar::model
