#include "cnnviz/io/report.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <ctime>

#include "cnnviz/core/device.h"
#include "cnnviz/core/version.h"
#include "cnnviz/io/atomic_file.h"

namespace cnnviz {

nlohmann::json ReportHeader(const std::string& command, const Model& model, uint64_t seed) {
  const InputSpec& spec = model.input_spec();
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char created[32];
  std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"cnnviz_version", Version()},
          {"torch_version", TorchVersion()},
          {"command", command},
          {"created", created},
          {"seed", seed},
          {"model",
           {{"path", model.path()},
            {"device", DeviceName(model.device())},
            {"input",
             {{"size", {spec.height, spec.width}},
              {"channel_order", spec.channel_order},
              {"range", {spec.range_low, spec.range_high}},
              {"mean", spec.mean},
              {"std", spec.std},
              {"source", spec.source}}}}}};
}

void WriteJson(const std::string& path, const nlohmann::json& doc) { WriteFileAtomic(path, doc.dump(2) + "\n"); }

std::string SafeFileName(const std::string& label) {
  std::string name;
  for (char c : label) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    name.push_back(keep ? c : '_');
  }
  return name;
}

std::string PythonFloat(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // Shortest round-trip digits and exponent, then Python's layout: positional for 1e-4 <= |x| < 1e16.
  char buffer[64];
  const auto end = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific).ptr;
  const std::string text(buffer, end);  // e.g. "-1.2345e+03"
  const size_t e = text.find('e');
  const bool negative = text[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i) {
    if (text[i] != '.') digits.push_back(text[i]);
  }
  const int exponent = std::stoi(text.substr(e + 1));
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      out += digits + std::string(static_cast<size_t>(exponent + 1) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exponent + 1)) + "." + digits.substr(static_cast<size_t>(exponent + 1));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp[16];
  std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp;
}

}  // namespace cnnviz
