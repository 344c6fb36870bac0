// What the tools' command lines share: --config TOML files (configs/*.toml) and the exit status of a
// command line CLI11 refused.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <istream>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace oscar {

/// A --config file: keys are long option names (or one-letter short ones, as CLI11 allows), and a key no
/// option has is an error, so a misspelt key cannot silently leave its option at the default. The [zoo] table
/// belongs to scripts/regenerate-zoo.sh and is skipped.
class ToolConfigFile : public CLI::ConfigTOML {
 public:
  explicit ToolConfigFile(const CLI::App* app) : app_(app) {}

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> items = CLI::ConfigTOML::from_config(input);
    items.erase(std::remove_if(items.begin(), items.end(),
                               [](const CLI::ConfigItem& item) { return !item.parents.empty() && item.parents.front() == "zoo"; }),
                items.end());
    for (const CLI::ConfigItem& item : items) require_known(item);
    return items;
  }

 private:
  // Tables name subcommands ([accumulate]); "++" and "--" are CLI11's marks for a table's start and end.
  void require_known(const CLI::ConfigItem& item) const {
    const CLI::App* scope = app_;
    for (const std::string& table : item.parents) {
      try {
        scope = scope->get_subcommand(table);
      } catch (const CLI::OptionNotFound&) {
        throw CLI::ConfigError("unknown table [" + table + "] (tables are subcommand names; see --help)");
      }
    }
    if (item.name == "++" || item.name == "--") return;
    const bool short_name = item.name.size() == 1 && scope->get_option_no_throw("-" + item.name) != nullptr;
    if (!short_name && scope->get_option_no_throw("--" + item.name) == nullptr && scope->get_option_no_throw(item.name) == nullptr) {
      throw CLI::ConfigError("unknown key '" + item.fullname() + "' (keys are long option names; see --help)");
    }
  }

  const CLI::App* app_;
};

/// Adds --config to `app`, read as a ToolConfigFile.
inline void add_config_option(CLI::App& app) {
  app.set_config("--config", "", "Read options from a TOML file (keys are long option names)");
  app.config_formatter(std::make_shared<ToolConfigFile>(&app));
  app.allow_config_extras(CLI::config_extras_mode::error);
}

/// A validator for numeric options, in place of CLI11's PositiveNumber and NonNegativeNumber, whose messages
/// spell out the range up to DBL_MAX: "--tokens: expected a finite number > 0, got '-5'".
inline CLI::Validator number_validator(bool allow_zero) {
  const std::string expected = allow_zero ? "a finite number >= 0" : "a finite number > 0";
  return CLI::Validator(
      [allow_zero, expected](std::string& input) -> std::string {
        double value = 0;
        const bool number = CLI::detail::lexical_cast(input, value);
        if (number && std::isfinite(value) && (allow_zero ? value >= 0 : value > 0)) return std::string();
        return "expected " + expected + ", got '" + input + "'";
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}
inline const CLI::Validator kPositiveNumber = number_validator(false);
inline const CLI::Validator kNonNegativeNumber = number_validator(true);

/// The exit status for a command line CLI11 refused (0 for --help and --version), after printing why; a
/// --config file's problem is one line naming the file.
inline int command_line_exit(const CLI::App& app, const CLI::ParseError& error, const char* tool) {
  const CLI::Option* config = app.get_config_ptr();
  if (dynamic_cast<const CLI::ConfigError*>(&error) != nullptr && config != nullptr && config->count() > 0) {
    std::fprintf(stderr, "%s: error: %s: %s\n", tool, config->results().back().c_str(), error.what());
    return kExitUsage;
  }
  return app.exit(error) == 0 ? kExitOk : kExitUsage;
}

}  // namespace oscar
