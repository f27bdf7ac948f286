// cnnviz's error hierarchy. Library code throws; only `main` turns an Error into a one-line message and
// the exit code below (documented in README.md, "Exit codes").
#pragma once

#include <stdexcept>
#include <string>

namespace cnnviz {

// Process exit codes, stable across releases.
enum class ExitCode : int {
  kOk = 0,          // success
  kInternal = 1,    // a bug in cnnviz or an unexpected library failure
  kUsage = 2,       // bad flags or values: unknown layer, unit out of range, syntax error
  kInput = 3,       // a file cannot be used: missing, unreadable, not TorchScript, malformed sidecar
  kModel = 4,       // the model cannot run as asked: unknown operator, input too small, untappable layer,
                    // an error raised by the model's own code, not enough memory
  kHangup = 129,       // SIGHUP     } the run stops at once: the file being written is removed, the output
  kInterrupted = 130,  // SIGINT     } folder has no report.json (unfinished), the next run on it cleans up
  kTerminated = 143,   // SIGTERM    }
};

// Base of every exception cnnviz throws on purpose. `what()` is one line, meant for users.
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// A flag or option value is wrong.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(ExitCode::kUsage, message) {}
};

// An input file is missing, unreadable or malformed.
class InputError : public Error {
 public:
  explicit InputError(const std::string& message) : Error(ExitCode::kInput, message) {}
};

// The model loads but cannot do what was asked.
class ModelError : public Error {
 public:
  explicit ModelError(const std::string& message) : Error(ExitCode::kModel, message) {}
};

// Returns the first line of `text`, trimmed: torch's messages carry C++ stack traces after it.
std::string FirstLine(const std::string& text);

}  // namespace cnnviz
