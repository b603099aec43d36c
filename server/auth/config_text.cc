#include "server/auth/config_text.h"

namespace logp {

std::vector<ConfigLine> SplitConfigLines(std::string_view contents) {
  std::vector<ConfigLine> lines;
  int number = 0;
  while (!contents.empty()) {
    ++number;
    const size_t end = contents.find('\n');
    std::string_view line = contents.substr(0, end);
    contents = end == std::string_view::npos ? std::string_view() : contents.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    ConfigLine parsed{number, {}};
    size_t i = 0;
    while (i < line.size()) {
      if (line[i] == ' ' || line[i] == '\t') {
        ++i;
        continue;
      }
      if (line[i] == '#') break;  // a comment: the field would begin with '#'
      const size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      parsed.fields.push_back(line.substr(start, i - start));
    }
    if (!parsed.fields.empty()) lines.push_back(std::move(parsed));
  }
  return lines;
}

}  // namespace logp
