// A small JSON reader and string quoting: enough for safetensors headers and the run folder's metrics rows.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace gan {

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  double number = 0;
  bool boolean = false;
  std::string text;
  std::vector<Json> items;                           // arrays
  std::vector<std::pair<std::string, Json>> members;  // objects, in order
  const Json* get(const std::string& key) const;     // nullptr when absent or not an object
  double num(const std::string& key, double fallback) const;  // a member's number, or `fallback`
};

// Parses `text`; throws std::runtime_error("... at byte N") when it is not JSON.
Json parse_json(const std::string& text);

// `text` as a JSON string literal (quotes, backslashes and control characters escaped).
std::string json_quote(const std::string& text);

}  // namespace gan
