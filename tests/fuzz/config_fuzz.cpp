// libFuzzer target for the config loader (src/core/config.cpp). Build and run with scripts/fuzz.sh.
//
// Input: a .cfg text. Lines starting with "--set " are taken out and applied, in order, as
// `--set section.key=value` overrides after parsing; the remaining lines are the YAML text.
// Contract checked: every bad input ends in gan::UserError. Any other exception propagates
// (libFuzzer reports "uncaught exception"), and crashes/hangs/sanitizer reports are findings too.
// Round trip: whenever a config is accepted, parse_config(to_yaml(c)) must accept it, print the
// same YAML and hold the same doubles (config.h promises parse(to_yaml(c)) == c); otherwise we
// abort() so libFuzzer saves the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/errors.h"

namespace {

void check_round_trip(const gan::Config& c, const char* stage) {
  const std::string first = gan::to_yaml(c);
  gan::Config back;
  try {
    back = gan::parse_config(first, "rt");
  } catch (const gan::UserError& e) {
    std::fprintf(stderr, "round trip (%s): to_yaml output rejected: %s\n--- to_yaml:\n%s", stage, e.what(),
                 first.c_str());
    std::abort();
  }
  const std::string second = gan::to_yaml(back);
  // Equal text can still hide a lossy print: doubles are the only fields whose text may drop bits.
  const bool same_doubles =
      back.train.lr == c.train.lr && back.train.beta1 == c.train.beta1 && back.train.beta2 == c.train.beta2;
  if (second != first || !same_doubles) {
    std::fprintf(stderr, "round trip (%s): mismatch (doubles equal: %d)\n--- to_yaml(c):\n%s--- to_yaml(back):\n%s",
                 stage, same_doubles, first.c_str(), second.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Split into YAML lines and "--set " override lines (each line keeps its '\n', if any).
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string yaml;
  std::vector<std::string> overrides;
  for (size_t pos = 0; pos < input.size();) {
    size_t end = input.find('\n', pos);
    end = end == std::string::npos ? input.size() : end + 1;
    std::string line = input.substr(pos, end - pos);
    pos = end;
    if (line.rfind("--set ", 0) == 0) {
      if (line.back() == '\n') line.pop_back();
      overrides.push_back(line.substr(6));
    } else {
      yaml += line;
    }
  }

  try {
    gan::Config cfg = gan::parse_config(yaml, "fuzz.cfg");
    check_round_trip(cfg, "parsed");
    if (overrides.empty()) return 0;
    for (const auto& o : overrides) gan::apply_override(cfg, o);
    gan::validate_config(cfg);
    check_round_trip(cfg, "after --set");
  } catch (const gan::UserError&) {
    // Expected: a clean, user-facing rejection.
  }
  return 0;
}
