#include "client/message_fields.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace logp {

absl::Status SetField(google::protobuf::Message* msg, const std::string& name,
                      const std::string& value) {
  using google::protobuf::FieldDescriptor;
  const auto* field = msg->GetDescriptor()->FindFieldByName(name);
  if (field == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, " does not apply to ", msg->GetDescriptor()->name(), " (see --model_json)"));
  }
  const auto* refl = msg->GetReflection();
  bool ok = true;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      ok = absl::SimpleAtoi(value, &v);
      if (ok) refl->SetInt32(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      ok = absl::SimpleAtoi(value, &v);
      if (ok) refl->SetUInt64(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      ok = absl::SimpleAtod(value, &v);
      if (ok) refl->SetDouble(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      ok = absl::SimpleAtob(value, &v);
      if (ok) refl->SetBool(msg, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const std::string upper = absl::AsciiStrToUpper(value);
      const google::protobuf::EnumValueDescriptor* match = nullptr;
      std::vector<std::string> words;
      for (int i = 1; i < field->enum_type()->value_count(); ++i) {
        const auto* v = field->enum_type()->value(i);
        const std::string word = v->name().substr(v->name().rfind('_') + 1);
        if (absl::EndsWith(v->name(), "_" + upper)) match = v;
        words.push_back(absl::AsciiStrToLower(word));
      }
      if (match == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " must be one of ", absl::StrJoin(words, ", "), ", got '", value, "'"));
      }
      refl->SetEnum(msg, field, match);
      break;
    }
    default:
      ok = false;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": cannot read '", value, "'"));
  }
  return absl::OkStatus();
}

}  // namespace logp
