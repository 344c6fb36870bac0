#include "zoo/zoo_manifest.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/file_digest.h"

namespace oscar::zoo {
namespace {

namespace fs = std::filesystem;

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path.string() + ": missing (a zoo entry needs it)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    throw InputError(path.string() + ": not JSON (" + error.what() + ")");
  }
}

const nlohmann::json& field(const nlohmann::json& json, const char* key, const fs::path& path) {
  if (!json.is_object() || !json.contains(key)) throw InputError(path.string() + ": no \"" + key + "\"");
  return json.at(key);
}

nlohmann::json file_list(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename() != manifest_format::kFileName &&
        entry.path().extension() != ".tmp") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  nlohmann::json list = nlohmann::json::array();
  for (const fs::path& file : files) {
    list.push_back({{"name", file.filename().string()}, {"bytes", fs::file_size(file)}, {"sha256", io::sha256_file(file.string())}});
  }
  return list;
}

}  // namespace

nlohmann::json build_manifest(const std::string& dir) {
  const fs::path root(dir);
  const fs::path calibration_path = root / manifest_format::kCalibrationRecord, verify_path = root / manifest_format::kVerifyReport;
  const nlohmann::json calibration = read_json_file(calibration_path), verify = read_json_file(verify_path);
  const nlohmann::json& model = field(verify, "model", verify_path);
  const nlohmann::json& model_files = field(model, "files", verify_path);
  std::set<std::string> model_hashes;
  for (const auto& file : model_files) model_hashes.insert(file.value("sha256", ""));
  nlohmann::json data = nlohmann::json::array();
  for (const auto& input : field(calibration, "inputs", calibration_path)) {
    if (!model_hashes.count(input.value("sha256", ""))) data.push_back(input);
  }
  nlohmann::json description = model;
  description.erase("files");
  const std::string identity = description.dump() + model_files.dump();
  const fs::path absolute = fs::absolute(root).lexically_normal();
  const fs::path tail = absolute.has_filename() ? absolute : absolute.parent_path();
  return {{"manifest_version", manifest_format::kVersion},
          {"entry", tail.parent_path().filename().string() + "/" + tail.filename().string()},
          {"files", file_list(root)},
          {"model", {{"identity_sha256", io::sha256_bytes(identity)}, {"description", description}, {"files", model_files}}},
          {"data", data},
          {"calibration", {{"options", calibration.value("options", nlohmann::json::object())},
                           {"tag", calibration.value("tag", "")}}},
          {"verify", {{"options", field(verify, "options", verify_path)},
                      {"summary", field(verify, "summary", verify_path)},
                      {"budget", field(verify, "budget", verify_path)}}}};
}

nlohmann::json write_manifest(const std::string& dir) {
  nlohmann::json manifest = build_manifest(dir);
  write_file_atomically((fs::path(dir) / manifest_format::kFileName).string(), manifest.dump(2) + "\n");
  return manifest;
}

std::vector<std::string> compare_manifests(const nlohmann::json& expected, const nlohmann::json& actual) {
  std::vector<std::string> differences;
  auto files_by_name = [](const nlohmann::json& manifest) {
    std::map<std::string, std::string> files;
    for (const auto& file : manifest.value("files", nlohmann::json::array())) files[file.value("name", "")] = file.value("sha256", "");
    return files;
  };
  const auto want = files_by_name(expected), have = files_by_name(actual);
  for (const auto& [name, hash] : want) {
    const auto found = have.find(name);
    if (found == have.end()) differences.push_back("files: " + name + " is missing");
    else if (found->second != hash) differences.push_back("files: " + name + ": sha256 " + hash.substr(0, 12) + "... != " + found->second.substr(0, 12) + "...");
  }
  for (const auto& [name, hash] : have) {
    if (!want.count(name)) differences.push_back("files: " + name + " is new");
  }
  for (const char* key : {"model", "data", "calibration", "verify"}) {
    if (expected.value(key, nlohmann::json()) != actual.value(key, nlohmann::json())) differences.push_back(std::string(key) + " differs");
  }
  return differences;
}

}  // namespace oscar::zoo
