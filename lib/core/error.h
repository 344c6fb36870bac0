// Errors shared by every area, and the exit codes the apps map them to.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>

namespace oscar {

/// Process exit codes, the same for every tool.
enum ExitCode : int {
  kExitOk = 0,
  kExitBadInput = 1,  ///< a file or its content is wrong (named in the message)
  kExitUsage = 2,     ///< the command line is wrong
};

/// Bad input data: a malformed, truncated or inconsistent file. The message is one line and names the
/// file (or layer/chunk) and the problem; apps print it and exit with kExitBadInput.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The command line asks for something impossible (a malformed range, a missing companion option):
/// apps print it and exit with kExitUsage.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Runs an app's command body (returning its exit code) and turns what escapes it into the one-line
/// "<tool>: error: <message>" on stderr that every tool prints: UsageError exits with kExitUsage, any other
/// exception with kExitBadInput. Apps call it once, after the command line has parsed.
template <class Body>
int report_errors(const char* tool, Body&& body) {
  try {
    return body();
  } catch (const UsageError& error) {
    std::fprintf(stderr, "%s: error: %s\n", tool, error.what());
    return kExitUsage;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: error: %s\n", tool, error.what());
    return kExitBadInput;
  }
}

}  // namespace oscar
