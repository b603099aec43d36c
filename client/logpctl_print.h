// logpctl's output: progress lines, tables, JSON, and the words it prints for the API's values.
#ifndef LOGP_CLIENT_LOGPCTL_PRINT_H_
#define LOGP_CLIENT_LOGPCTL_PRINT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"
#include "logp/v1/model_service.pb.h"

namespace logp::logpctl {

// Erases a progress line drawn on stderr so that the next output starts on a clean line.
void ClearProgressLine();

void DrawProgressLine(const std::string& line);

// A progress bar of `width` characters.
std::string Bar(double fraction, int width = 30);

absl::Status PrintJson(const google::protobuf::Message& message);

// Prints "key  value" lines with the values aligned.
void PrintFields(const std::vector<std::pair<std::string, std::string>>& fields);

// A listing's table, with a TENANT column after the id when its items belong to more than one
// tenant (what an admin sees); `tenants` holds each row's.
void PrintListing(std::vector<std::string> header, std::vector<std::vector<std::string>> rows,
                  std::vector<bool> right, const std::vector<std::string>& tenants);

std::string Time(const google::protobuf::Timestamp& t);

std::string Bytes(uint64_t n);

std::string FamilyWord(v1::ModelFamily f);

// The params message of `family` inside `spec` (the field named like the family), or nullptr.
google::protobuf::Message* FamilyParams(v1::ModelSpec* spec, v1::ModelFamily family);

std::string StateWord(v1::JobState s);

std::string ScoreKindName(v1::ScoreKind k);

std::string ShapeWord(const v1::ImageShape& s);

// A mean NLL as logpctl prints it (4 decimals).
std::string Nll(double v);

absl::Status Print(const v1::Dataset& d);

std::string Progress(const v1::Job& j);

absl::Status Print(const v1::Job& j);

absl::Status Print(const v1::Model& m);

// Parses a lower-case word into an enum value named PREFIX + upper-case word.
template <typename Enum>
absl::StatusOr<Enum> ParseEnum(const std::string& flag, const std::string& word,
                               const std::string& prefix, bool (*parse)(const std::string&, Enum*),
                               const char* allowed) {
  Enum value{};
  if (word.empty() || !parse(prefix + absl::AsciiStrToUpper(word), &value) ||
      static_cast<int>(value) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " must be one of ", allowed, ", got '", word, "'"));
  }
  return value;
}

}  // namespace logp::logpctl

#endif  // LOGP_CLIENT_LOGPCTL_PRINT_H_
