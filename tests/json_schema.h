// A JSON Schema (draft 7) checker for the subset cnnviz's schemas use: type (one or a list), enum,
// required, properties, items, minItems. Enough to hold documents to their documented shape in tests.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace cnnviz::test {

inline bool HasType(const nlohmann::json& value, const std::string& type) {
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  if (type == "string") return value.is_string();
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  if (type == "boolean") return value.is_boolean();
  if (type == "null") return value.is_null();
  return false;
}

// Appends one line per violation, naming its JSON path.
inline void CheckSchema(const nlohmann::json& value, const nlohmann::json& schema, const std::string& path,
                        std::vector<std::string>* problems) {
  if (schema.contains("type")) {
    std::vector<std::string> types;
    if (schema["type"].is_array()) {
      for (const auto& t : schema["type"]) types.push_back(t);
    } else {
      types.push_back(schema["type"]);
    }
    bool ok = false;
    for (const auto& t : types) ok = ok || HasType(value, t);
    if (!ok) {
      problems->push_back(path + ": expected " + schema["type"].dump() + ", got " + value.type_name());
      return;
    }
  }
  if (schema.contains("enum")) {
    bool found = false;
    for (const auto& allowed : schema["enum"]) found = found || allowed == value;
    if (!found) problems->push_back(path + ": " + value.dump() + " is not one of " + schema["enum"].dump());
  }
  if (value.is_object()) {
    if (schema.contains("required")) {
      for (const auto& key : schema["required"]) {
        if (!value.contains(key.get<std::string>())) problems->push_back(path + ": missing '" + key.get<std::string>() + "'");
      }
    }
    if (schema.contains("properties")) {
      for (const auto& [key, sub] : schema["properties"].items()) {
        if (value.contains(key)) CheckSchema(value[key], sub, path + "." + key, problems);
      }
    }
  }
  if (value.is_array()) {
    if (schema.contains("minItems") && value.size() < schema["minItems"].get<size_t>()) {
      problems->push_back(path + ": fewer than " + schema["minItems"].dump() + " items");
    }
    if (schema.contains("items")) {
      for (size_t i = 0; i < value.size(); ++i) CheckSchema(value[i], schema["items"], path + "[" + std::to_string(i) + "]", problems);
    }
  }
}

}  // namespace cnnviz::test
