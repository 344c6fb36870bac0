// oscar-int2: the OSCAR INT2 KV-cache format from the command line: pack rows with a rotation, unpack them,
// print the bits-per-element table, benchmark the CPU runtime. The work is in lib/runtime and lib/io.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <thread>

#include "command_line.h"
#include "core/error.h"
#include "core/version.h"
#include "io/int2_pack_file.h"
#include "io/layer_rotation.h"
#include "io/torch_file.h"
#include "runtime/bits_per_element.h"
#include "runtime/int2_bench.h"

namespace {

using namespace oscar;

/// [T, H, d] (or [N, d], one head) float rows of a torch.save file, widened to float32.
std::vector<float> read_rows(const std::string& path, std::int64_t& tokens, int& heads, int& head_dim) {
  const HostTensor tensor = io::read_torch_tensor(path);
  if (tensor.shape.size() == 3) {
    tokens = tensor.shape[0], heads = int(tensor.shape[1]), head_dim = int(tensor.shape[2]);
  } else if (tensor.shape.size() == 2) {
    tokens = tensor.shape[0], heads = 1, head_dim = int(tensor.shape[1]);
  } else {
    throw InputError(path + ": expected [T, H, d] or [N, d] rows, got " + shape_string(tensor.shape));
  }
  std::vector<double> widened(std::size_t(tensor.numel()));
  tensor.copy_to_double(0, tensor.numel(), widened.data());
  return {widened.begin(), widened.end()};
}

HostTensor float_tensor(std::vector<std::int64_t> shape, const std::vector<float>& values) {
  HostTensor tensor;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(values.size() * sizeof(float));
  std::memcpy(tensor.bytes.data(), values.data(), tensor.bytes.size());
  return tensor;
}

struct PackOptions {
  std::string input, rotation_path, output, kind = "k", scale_type = "float32";
  int layer = 0, group_size = 0, threads = 1;
  double clip = -1.0;  ///< < 0: the reference default of the kind
  bool lloyd_max = false;
};

void run_pack(const PackOptions& options) {
  std::int64_t tokens = 0;
  int heads = 0, head_dim = 0;
  const std::vector<float> rows = read_rows(options.input, tokens, heads, head_dim);
  runtime::Int2Config config;
  config.head_dim = head_dim;
  config.group_size = options.group_size > 0 ? options.group_size : head_dim;
  config.clip_ratio = options.clip >= 0 ? options.clip
                      : options.kind == "k" ? runtime::int2_format::kDefaultKeyClipRatio
                                            : runtime::int2_format::kDefaultValueClipRatio;
  config.scale_type = options.scale_type == "float16" ? runtime::ScaleType::kFloat16 : runtime::ScaleType::kFloat32;
  config.encoding = options.lloyd_max ? runtime::Encoding::kLloydMax : runtime::Encoding::kMinMax;
  io::Int2PackInfo info{options.kind, options.layer, "none"};
  runtime::Rotation rotation;
  if (!options.rotation_path.empty()) rotation = io::read_layer_rotation(options.rotation_path, options.layer, &info.rotation);
  try {
    const auto packed = runtime::pack_rows(rows.data(), tokens, heads, rotation, config, options.threads);
    io::write_int2_pack(options.output, packed, info);
  } catch (const std::invalid_argument& error) {
    throw InputError(options.input + ": " + error.what());
  }
}

void run_unpack(const std::string& input, const std::string& rotation_path, const std::string& output, int threads) {
  io::Int2PackInfo info;
  const runtime::PackedRows packed = io::read_int2_pack(input, &info);
  runtime::Rotation rotation;
  if (!rotation_path.empty()) rotation = io::read_layer_rotation(rotation_path, info.layer);
  try {
    const std::vector<float> rows = runtime::unpack_rows(packed, rotation, threads);
    io::write_torch_tensor(output, float_tensor({packed.tokens, packed.heads, packed.config.head_dim}, rows));
  } catch (const std::invalid_argument& error) {
    throw InputError(input + ": " + error.what());
  }
}

void print_bits_table(const std::vector<std::int64_t>& contexts, const runtime::CacheLayout& layout, int head_dim,
                      int group_size) {
  std::printf("| context | fp32 scales (bits/elem) | fp16 scales (bits/elem) | vs 16-bit cache (fp16 scales) |\n");
  std::printf("|---:|---:|---:|---:|\n");
  for (std::int64_t context : contexts) {
    runtime::Int2Config config;
    config.head_dim = head_dim;
    config.group_size = group_size > 0 ? group_size : head_dim;
    const double fp32 = runtime::cache_bits_per_element(context, layout, config);
    config.scale_type = runtime::ScaleType::kFloat16;
    const double fp16 = runtime::cache_bits_per_element(context, layout, config);
    std::printf("| %lld | %.2f | %.2f | %.1fx smaller |\n", static_cast<long long>(context), fp32, fp16,
                layout.full_precision_bits / fp16);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"oscar-int2 " + std::string(kVersion) + ": the OSCAR INT2 KV-cache format (pack, unpack, bits, bench)"};
  app.set_version_flag("--version", std::string("oscar-int2 ") + kVersion);
  app.require_subcommand(1);
  const int all_cores = int(std::max(1u, std::thread::hardware_concurrency()));

  CLI::App* pack = app.add_subcommand("pack", "Rotate and quantise rows [T, H, d] of a .pt file into an INT2 pack");
  PackOptions pack_options;
  pack_options.threads = all_cores;
  pack->add_option("--in", pack_options.input, "Rows: torch.save tensor [T, H, d] or [N, d]")->required();
  pack->add_option("--rotation", pack_options.rotation_path, "RotationZoo file (k_rotation_*.pt / v_rotation_*.pt)");
  pack->add_option("--layer", pack_options.layer, "Layer of the rotation file");
  pack->add_option("--kind", pack_options.kind, "k or v (picks the default clip ratio)")->check(CLI::IsMember({"k", "v"}));
  pack->add_option("--clip", pack_options.clip, "Clip ratio (0 disables; default 0.96 for k, 0.92 for v)");
  pack->add_option("--group", pack_options.group_size, "Group size: head_dim (default), 64 or 32");
  pack->add_option("--scale-type", pack_options.scale_type, "Storage of scales and zeros")
      ->check(CLI::IsMember({"float32", "float16"}))->capture_default_str();
  pack->add_flag("--lloyd-max", pack_options.lloyd_max, "Lloyd-Max codes instead of min/max");
  pack->add_option("--threads", pack_options.threads, "Threads")->check(CLI::Range(1, 1024));
  pack->add_option("--out", pack_options.output, "Output pack (.pt)")->required();

  CLI::App* unpack = app.add_subcommand("unpack", "Dequantise an INT2 pack back to float32 rows [T, H, d]");
  std::string unpack_input, unpack_rotation, unpack_output;
  int unpack_threads = all_cores;
  unpack->add_option("--in", unpack_input, "INT2 pack from `pack`")->required();
  unpack->add_option("--rotation", unpack_rotation, "Rotation file: multiply by Rᵀ to return to the model's basis");
  unpack->add_option("--out", unpack_output, "Output rows (.pt, float32)")->required();
  unpack->add_option("--threads", unpack_threads, "Threads")->check(CLI::Range(1, 1024));

  CLI::App* bits = app.add_subcommand("bits", "Bits per element of the mixed cache at given context lengths");
  std::vector<std::int64_t> contexts = {4096, 32768, 131072};
  runtime::CacheLayout layout;
  int bits_head_dim = 128, bits_group = 0;
  bits->add_option("--context", contexts, "Context lengths in tokens")->capture_default_str();
  bits->add_option("--sink", layout.sink_tokens, "Sink tokens at full precision")->capture_default_str();
  bits->add_option("--recent", layout.recent_tokens, "Recent-window tokens at full precision")->capture_default_str();
  bits->add_option("--head-dim", bits_head_dim, "Head dimension")->capture_default_str();
  bits->add_option("--group", bits_group, "INT2 group size (default: head dim)");

  CLI::App* bench = app.add_subcommand("bench", "Benchmark CPU quantisation and decode attention (prints markdown)");
  runtime::BenchOptions bench_options;
  bench_options.threads = all_cores;
  bench->add_option("--context", bench_options.contexts, "Context lengths for decode attention")->capture_default_str();
  bench->add_option("--threads", bench_options.threads, "Threads")->check(CLI::Range(1, 1024));
  bench->add_option("--seconds", bench_options.seconds_per_case, "Minimum seconds per measurement")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return command_line_exit(app, error, "oscar-int2");
  }
  return report_errors("oscar-int2", [&] {
    if (pack->parsed()) run_pack(pack_options);
    if (unpack->parsed()) run_unpack(unpack_input, unpack_rotation, unpack_output, unpack_threads);
    if (bits->parsed()) print_bits_table(contexts, layout, bits_head_dim, bits_group);
    if (bench->parsed()) runtime::run_int2_bench(bench_options, stdout);
    return kExitOk;
  });
}
