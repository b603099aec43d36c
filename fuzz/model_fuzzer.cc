// Fuzzes model-file and checkpoint decoding (models/model.h: Model::Deserialize and
// ModelFromCheckpoint), LibTorch's archive reader included. A decoded model must be usable:
// it scores and samples records of its shape, and it re-serialises to bytes that decode to a
// model with bit-identical scores and samples.
//
// Files declaring a large model (dim or any size-like spec field over kMaxSize) are skipped
// before decoding: allocating a big net is a resource question the stores answer with
// checksums and limits, not a decoding one, and it would only slow the fuzzer down.
//
// So are files whose archive records other than the tensors' bytes (data.pkl, code/,
// constants.pkl, version) differ from what LibTorch writes for the declared model. LibTorch
// compiles the TorchScript source and runs the unpickler over those records, and both fail
// badly on malformed input: a SEGV in torch::jit::ScriptTypeParser::parseClassConstant, and
// Unpickler::readBytes zero-filling a string of the length a pickle declares (4 GB touched for
// a 4 KB file). Reproducers in fuzz/findings/; LOGP_FUZZ_MODEL_ALL=1 lets such inputs through.
// logp cannot fix those from outside, and skipping them lets the fuzzer reach the rest: the zip
// container, the tensor records (any size: a record shorter than its storage is refused by
// Deserialize), logp's header and spec, and everything after loading.
#include <caffe2/serialize/inline_container.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "fuzz/fuzz_util.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "logp/v1/job_service.pb.h"
#include "models/model.h"
#include "models/train.h"

namespace logp::fuzz {
namespace {

constexpr int64_t kMaxSize = 64;

// True if every integer field of `msg` (recursively) other than seeds is at most kMaxSize.
bool SmallSpec(const google::protobuf::Message& msg) {
  using google::protobuf::FieldDescriptor;
  const auto* refl = msg.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(msg, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->is_repeated()) {
      if (refl->FieldSize(msg, f) > 8) return false;
      continue;
    }
    if (f->name().find("seed") != std::string::npos) continue;
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        if (refl->GetInt32(msg, f) > kMaxSize) return false;
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        if (refl->GetInt64(msg, f) > kMaxSize) return false;
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        if (refl->GetUInt32(msg, f) > kMaxSize) return false;
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        if (refl->GetUInt64(msg, f) > kMaxSize) return false;
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (!SmallSpec(refl->GetMessage(msg, f))) return false;
        break;
      default:
        break;
    }
  }
  return true;
}

// The header of a model file (layout of Model::SerializeTo): its spec and data shape, and where
// its LibTorch archive starts; nullopt for bytes that are not a model file or whose header is cut
// short or does not parse (Deserialize refuses those before LibTorch reads anything).
struct ModelFileHeader {
  v1::ModelSpec spec;
  DataShape shape;
  size_t archive_offset = 0;
};
std::optional<ModelFileHeader> ReadModelFileHeader(absl::string_view bytes) {
  if (bytes.size() < 12 || bytes.substr(0, 8) != "LOGPMDL1") return std::nullopt;
  uint32_t spec_len;
  std::memcpy(&spec_len, bytes.data() + 8, 4);
  if (bytes.size() < 12 + uint64_t{spec_len} + 16) return std::nullopt;
  ModelFileHeader h;
  if (!h.spec.ParseFromArray(bytes.data() + 12, static_cast<int>(spec_len))) return std::nullopt;
  int32_t kind;
  std::memcpy(&kind, bytes.data() + 12 + spec_len, 4);
  std::memcpy(&h.shape.dim, bytes.data() + 12 + spec_len + 4, 8);
  std::memcpy(&h.shape.num_categories, bytes.data() + 12 + spec_len + 12, 4);
  h.shape.kind = static_cast<v1::DataKind>(kind);
  h.archive_offset = 12 + spec_len + 16;
  return h;
}

// False for a model file that declares a large model.
bool SmallModelFile(absl::string_view bytes) {
  const std::optional<ModelFileHeader> h = ReadModelFileHeader(bytes);
  return !h || (h->shape.dim <= kMaxSize && SmallSpec(h->spec));
}

// The records of a LibTorch archive other than its tensors' bytes, by name; nullopt if the zip
// does not parse.
std::optional<std::map<std::string, std::string>> SourceRecords(absl::string_view archive) {
  try {
    std::istringstream in{std::string(archive)};
    caffe2::serialize::PyTorchStreamReader reader(&in);
    std::map<std::string, std::string> out;
    for (const std::string& name : reader.getAllRecords()) {
      if (name.find("data/") != std::string::npos) continue;
      auto [data, size] = reader.getRecord(name);
      out[name] = std::string(static_cast<const char*>(data.get()), size);
    }
    return out;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// False for a model file whose archive's records other than tensor bytes differ from those of a
// fresh model of the spec and shape it declares (see the top of the file).
bool CanonicalSource(absl::string_view bytes) {
  const std::optional<ModelFileHeader> h = ReadModelFileHeader(bytes);
  if (!h) return true;
  absl::StatusOr<std::unique_ptr<Model>> fresh = Model::Create(h->spec, h->shape, 0);
  if (!fresh.ok()) return true;  // Deserialize refuses it before LibTorch reads the archive
  absl::StatusOr<std::string> canonical = (*fresh)->Serialize();
  FUZZ_CHECK(canonical.ok());
  const auto got = SourceRecords(bytes.substr(h->archive_offset));
  if (!got.has_value()) return true;  // LibTorch refuses the zip as this reader did
  return got == SourceRecords(absl::string_view(*canonical).substr(h->archive_offset));
}

// The model part of a checkpoint (layout of the checkpoint encoder), or the bytes themselves.
absl::string_view ModelPart(absl::string_view bytes) {
  if (bytes.size() < 16 || bytes.substr(0, 8) != "LOGPCKP1") return bytes;
  uint64_t len;
  std::memcpy(&len, bytes.data() + 8, 8);
  return bytes.substr(16, len);
}

// Records of the model's shape: all zeros, and a row of alternating values.
RecordMatrix Probe(const DataShape& s) {
  RecordMatrix m = *RecordMatrix::Empty(s.kind, s.dim, s.num_categories);
  for (int64_t r = 0; r < 2; ++r) {
    for (int64_t c = 0; c < s.dim; ++c) {
      const int v = r == 0 ? 0 : static_cast<int>(c % 2);
      if (s.kind == v1::DATA_KIND_CONTINUOUS) {
        m.f32.push_back(static_cast<float>(v) * 1.5f);
      } else if (s.num_categories > 256) {
        m.u16.push_back(static_cast<uint16_t>(v));
      } else {
        m.u8.push_back(static_cast<uint8_t>(v));
      }
    }
    ++m.rows;
  }
  return m;
}

bool SameDoubles(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

void CheckUsable(const Model& model) {
  const DataShape& s = model.shape();
  FUZZ_CHECK(s.dim >= 1 && s.dim <= kMaxSize);
  FUZZ_CHECK(s.kind == v1::DATA_KIND_BINARY || s.kind == v1::DATA_KIND_CATEGORICAL ||
             s.kind == v1::DATA_KIND_CONTINUOUS);
  const RecordMatrix probe = Probe(s);
  absl::StatusOr<std::vector<double>> lp = model.LogProb(probe);
  if (!lp.ok()) std::fprintf(stderr, "LogProb: %s\n", lp.status().ToString().c_str());
  FUZZ_CHECK(lp.ok() && lp->size() == 2);
  absl::StatusOr<RecordMatrix> sample = model.Sample(2, 7);
  FUZZ_CHECK(sample.ok());
  FUZZ_CHECK(sample->rows == 2 && sample->cols == s.dim && sample->kind == s.kind);

  absl::StatusOr<std::string> bytes = model.Serialize();
  FUZZ_CHECK(bytes.ok());
  absl::StatusOr<std::unique_ptr<Model>> again = Model::Deserialize(*bytes);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK((*again)->spec().SerializeAsString() == model.spec().SerializeAsString());
  FUZZ_CHECK((*again)->shape().kind == s.kind && (*again)->shape().dim == s.dim &&
             (*again)->shape().num_categories == s.num_categories);
  absl::StatusOr<std::vector<double>> lp2 = (*again)->LogProb(probe);
  FUZZ_CHECK(lp2.ok() && SameDoubles(*lp, *lp2));
  absl::StatusOr<RecordMatrix> sample2 = (*again)->Sample(2, 7);
  FUZZ_CHECK(sample2.ok());
  for (int64_t c = 0; c < s.dim; ++c) {
    FUZZ_CHECK(sample->At(1, c) == sample2->At(1, c) ||
               (std::isnan(sample->At(1, c)) && std::isnan(sample2->At(1, c))));
  }
}

}  // namespace
}  // namespace logp::fuzz

// Input: a mode byte (even: a model file, odd: a checkpoint), then the bytes.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace logp;
  fuzz::Input in(data, size);
  const uint8_t mode = in.Take<uint8_t>();
  const std::string bytes(in.rest());
  const absl::string_view model_file = mode & 1 ? fuzz::ModelPart(bytes) : bytes;
  // LOGP_FUZZ_MODEL_ALL=1 lets non-canonical records through (to reproduce fuzz/findings/).
  static const bool all_source = std::getenv("LOGP_FUZZ_MODEL_ALL") != nullptr;
  if (!fuzz::SmallModelFile(model_file)) return 0;
  if (!all_source && !fuzz::CanonicalSource(model_file)) return 0;
  absl::StatusOr<std::unique_ptr<Model>> model =
      mode & 1 ? ModelFromCheckpoint(bytes) : Model::Deserialize(bytes);
  if (!model.ok()) {
    // Corrupt bytes are DATA_LOSS; a well-formed file of an impossible model INVALID_ARGUMENT
    // (or FAILED_PRECONDITION for a family that cannot model the kind).
    FUZZ_CHECK(absl::IsDataLoss(model.status()) || absl::IsInvalidArgument(model.status()) ||
               absl::IsFailedPrecondition(model.status()));
    return 0;
  }
  fuzz::CheckUsable(**model);
  return 0;
}
