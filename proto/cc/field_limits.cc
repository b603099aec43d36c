#include "proto/cc/field_limits.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace logp {
namespace {

using google::protobuf::FieldDescriptor;

size_t LimitOf(const FieldDescriptor& field) {
  const std::string& name = field.name();
  if (name == "id" || absl::EndsWith(name, "_id") || absl::EndsWith(name, "_token")) {
    return kMaxIdBytes;
  }
  return kMaxStringBytes;
}

absl::Status Check(const google::protobuf::Message& message, const std::string& prefix) {
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);  // only the fields that are set
  for (const FieldDescriptor* field : fields) {
    const std::string path = prefix + field->name();
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      const size_t limit = LimitOf(*field);
      const int n = field->is_repeated() ? reflection->FieldSize(message, field) : 1;
      for (int i = 0; i < n; ++i) {
        std::string scratch;
        const std::string& value =
            field->is_repeated()
                ? reflection->GetRepeatedStringReference(message, field, i, &scratch)
                : reflection->GetStringReference(message, field, &scratch);
        if (value.size() > limit) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, field->is_repeated() ? absl::StrCat("[", i, "]") : "",
                           " is longer than ", limit, " bytes (", value.size(), " bytes)"));
        }
      }
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          absl::Status st = Check(reflection->GetRepeatedMessage(message, field, i),
                                  absl::StrCat(path, "[", i, "]."));
          if (!st.ok()) return st;
        }
      } else {
        absl::Status st = Check(reflection->GetMessage(message, field), path + ".");
        if (!st.ok()) return st;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckStringLengths(const google::protobuf::Message& message) {
  return Check(message, "");
}

std::string Truncated(absl::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes) return std::string(value);
  size_t cut = max_bytes;
  // Do not split a UTF-8 sequence: back off over continuation bytes (10xxxxxx).
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(value.substr(0, cut), "...");
}

}  // namespace logp
