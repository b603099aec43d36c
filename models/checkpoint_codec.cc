// The checkpoint codec (see checkpoint_codec.h for the format).
#include "models/checkpoint_codec.h"

#include <cstring>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "models/density_net.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

constexpr char kCheckpointMagic[8] = {'L', 'O', 'G', 'P', 'C', 'K', 'P', '1'};
constexpr char kUnusableCheckpointPayload[] = "type.logp.dev/unusable-checkpoint";

torch::Tensor GeneratorState(at::Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void SetGeneratorState(at::Generator& gen, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

template <typename T>
T ReadScalar(torch::serialize::InputArchive& a, const char* key) {
  c10::IValue v;
  a.read(key, v);
  return v.to<T>();
}

torch::Tensor ReadTensor(torch::serialize::InputArchive& a, const std::string& key) {
  torch::Tensor t;
  a.read(key, t);
  return t;
}

}  // namespace

absl::StatusOr<std::string> EncodeCheckpoint(const Model& model, const TrainState& st,
                                             torch::optim::Optimizer* optimizer, at::Generator& gen,
                                             at::Generator& noise, int64_t train_rows) {
  // One string, reserved up front and appended to by both archives' writers: encoding costs
  // the checkpoint's size in memory once, not the three or four copies that string streams
  // make (which showed as a 45 MB spike in logpd's RSS per checkpoint of this 13 MB size).
  int64_t tensor_bytes = st.perm.defined() ? st.perm.nbytes() : 0;
  // Weights twice (the model, the best weights so far) and Adam's two moments.
  for (const auto& p : NetOf(model).parameters()) {
    tensor_bytes += 4 * p.nbytes();
  }
  std::string out;
  out.reserve(tensor_bytes + (1 << 16));
  out.append(kCheckpointMagic, sizeof(kCheckpointMagic));
  const size_t len_at = out.size();
  out.append(sizeof(uint64_t), '\0');
  RETURN_IF_ERROR(model.SerializeTo(&out));
  const uint64_t len = out.size() - len_at - sizeof(uint64_t);
  out.replace(len_at, sizeof(len), reinterpret_cast<const char*>(&len), sizeof(len));
  torch::serialize::OutputArchive a;
  a.write("version", c10::IValue(int64_t{2}));
  a.write("train_rows", c10::IValue(train_rows));
  a.write("step", c10::IValue(st.step));
  a.write("epoch", c10::IValue(st.epoch));
  a.write("next_batch", c10::IValue(st.next_batch));
  a.write("epoch_sum", c10::IValue(st.epoch_sum));
  a.write("epoch_records", c10::IValue(st.epoch_records));
  a.write("epoch_seconds", c10::IValue(st.epoch_seconds));
  a.write("train_seconds", c10::IValue(st.train_seconds));
  a.write("best", c10::IValue(st.best));
  a.write("best_epoch", c10::IValue(st.best_epoch));
  a.write("since_best", c10::IValue(st.since_best));
  a.write("has_perm", c10::IValue(st.perm.defined()));
  if (st.perm.defined()) a.write("perm", st.perm);
  a.write("gen", GeneratorState(gen));
  a.write("noise_gen", GeneratorState(noise));
  a.write("best_state_size", c10::IValue(static_cast<int64_t>(st.best_state.size())));
  for (size_t i = 0; i < st.best_state.size(); ++i) {
    a.write(absl::StrCat("best_state.", i), st.best_state[i]);
  }
  a.write("has_optimizer", c10::IValue(optimizer != nullptr));
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive o;
    optimizer->save(o);
    a.write("optimizer", o);
  }
  a.save_to([&out](const void* p, size_t n) {
    out.append(static_cast<const char*>(p), n);
    return n;
  });
  return out;
}

absl::StatusOr<std::pair<std::string, std::string>> SplitCheckpoint(const std::string& bytes) {
  constexpr size_t kHeader = sizeof(kCheckpointMagic) + sizeof(uint64_t);
  if (bytes.size() < kHeader ||
      std::memcmp(bytes.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) != 0) {
    return absl::DataLossError("checkpoint: bad magic");
  }
  uint64_t len;
  std::memcpy(&len, bytes.data() + sizeof(kCheckpointMagic), sizeof(len));
  if (len > bytes.size() - kHeader) return absl::DataLossError("checkpoint: truncated");
  return std::make_pair(bytes.substr(kHeader, len), bytes.substr(kHeader + len));
}

void DecodeTrainState(const std::string& state_bytes, int64_t train_rows, TrainState* st,
                      torch::optim::Optimizer* optimizer, at::Generator& gen,
                      at::Generator& noise) {
  torch::serialize::InputArchive a;
  std::istringstream in(state_bytes);
  a.load_from(in);
  const int64_t version = ReadScalar<int64_t>(a, "version");
  if (version != 1 && version != 2) throw std::runtime_error("unknown version");
  if (ReadScalar<int64_t>(a, "train_rows") != train_rows) {
    throw std::runtime_error("it was written for a different training set");
  }
  st->step = ReadScalar<int64_t>(a, "step");
  st->epoch = ReadScalar<int64_t>(a, "epoch");
  st->next_batch = ReadScalar<int64_t>(a, "next_batch");
  st->epoch_sum = ReadScalar<double>(a, "epoch_sum");
  st->epoch_records = ReadScalar<int64_t>(a, "epoch_records");
  st->epoch_seconds = ReadScalar<double>(a, "epoch_seconds");
  st->train_seconds = ReadScalar<double>(a, "train_seconds");
  st->best = ReadScalar<double>(a, "best");
  st->best_epoch = ReadScalar<int64_t>(a, "best_epoch");
  st->since_best = ReadScalar<int64_t>(a, "since_best");
  if (ReadScalar<bool>(a, "has_perm")) st->perm = ReadTensor(a, "perm");
  SetGeneratorState(gen, ReadTensor(a, "gen"));
  // Version 1 saved the process-wide generator that training noise then drew from; it becomes
  // the job's own noise generator.
  SetGeneratorState(noise, ReadTensor(a, version == 1 ? "global_gen" : "noise_gen"));
  st->best_state.clear();
  const int64_t n = ReadScalar<int64_t>(a, "best_state_size");
  for (int64_t i = 0; i < n; ++i)
    st->best_state.push_back(ReadTensor(a, absl::StrCat("best_state.", i)));
  if (ReadScalar<bool>(a, "has_optimizer") != (optimizer != nullptr)) {
    throw std::runtime_error("optimiser state does not match the family");
  }
  if (optimizer != nullptr) {
    torch::serialize::InputArchive o;
    a.read("optimizer", o);
    optimizer->load(o);
  }
}

absl::Status UnusableCheckpoint(absl::string_view message) {
  absl::Status st = absl::InvalidArgumentError(message);
  st.SetPayload(kUnusableCheckpointPayload, absl::Cord("1"));
  return st;
}

bool IsUnusableCheckpoint(const absl::Status& status) {
  return status.GetPayload(kUnusableCheckpointPayload).has_value();
}

absl::StatusOr<std::unique_ptr<Model>> ModelFromCheckpoint(const std::string& bytes) {
  ASSIGN_OR_RETURN(auto parts, SplitCheckpoint(bytes));
  return Model::Deserialize(parts.first);
}

}  // namespace logp
