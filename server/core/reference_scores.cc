#include "server/core/reference_scores.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace logp {
namespace {

constexpr char kMagic[8] = {'L', 'O', 'G', 'P', 'R', 'E', 'F', '1'};
// magic, kind, importance_samples, seed, num_scored, count.
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 8 + 8;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

}  // namespace

absl::StatusOr<ReferenceScores> ComputeReferenceScores(const Model& model,
                                                       const RecordMatrix& held_out, uint64_t seed,
                                                       const StopPoll& stop, int64_t max_kept) {
  ScoreOptions options;
  options.seed = seed;
  options.stop = stop;
  absl::StatusOr<Scores> scored = model.Score(held_out, options);
  if (!scored.ok()) return scored.status();
  ReferenceScores r;
  r.kind = scored->kind;
  r.importance_samples = scored->importance_samples;
  r.seed = seed;
  r.num_scored = static_cast<int64_t>(scored->log_prob.size());
  std::vector<double>& kept = scored->log_prob;
  if (max_kept >= 0 && r.num_scored > max_kept) {
    // The first max_kept places of a seeded Fisher-Yates shuffle: a uniform subsample.
    uint64_t state = SplitMix64(seed ^ 0x5245464552454e43ull);
    for (int64_t i = 0; i < max_kept; ++i) {
      state = SplitMix64(state);
      const uint64_t range = static_cast<uint64_t>(r.num_scored - i);
      // The modulo bias is below range / 2^64 < 1e-13: negligible.
      std::swap(kept[i], kept[i + static_cast<int64_t>(state % range)]);
    }
    kept.resize(max_kept);
  }
  std::sort(kept.begin(), kept.end());
  r.sorted_log_prob = std::move(kept);
  return r;
}

std::string SerializeReferenceScores(const ReferenceScores& reference) {
  std::string out(kMagic, sizeof(kMagic));
  out.reserve(kHeaderBytes + 8 * reference.sorted_log_prob.size());
  PutU32(static_cast<uint32_t>(reference.kind), &out);
  PutU32(static_cast<uint32_t>(reference.importance_samples), &out);
  PutU64(reference.seed, &out);
  PutU64(static_cast<uint64_t>(reference.num_scored), &out);
  PutU64(reference.sorted_log_prob.size(), &out);
  for (double v : reference.sorted_log_prob) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    PutU64(bits, &out);
  }
  return out;
}

absl::StatusOr<ReferenceScores> ParseReferenceScores(absl::string_view bytes,
                                                     const std::string& what) {
  if (bytes.size() < kHeaderBytes || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError(absl::StrCat(what, ": not a reference-scores file"));
  }
  const char* p = bytes.data() + sizeof(kMagic);
  ReferenceScores r;
  r.kind = static_cast<v1::ScoreKind>(GetU32(p));
  r.importance_samples = static_cast<int32_t>(GetU32(p + 4));
  r.seed = GetU64(p + 8);
  r.num_scored = static_cast<int64_t>(GetU64(p + 16));
  const uint64_t count = GetU64(p + 24);
  if (count > static_cast<uint64_t>(kMaxReferenceScores) ||
      bytes.size() != kHeaderBytes + 8 * count || !v1::ScoreKind_IsValid(r.kind)) {
    return absl::DataLossError(absl::StrCat(what, ": malformed reference-scores file"));
  }
  r.sorted_log_prob.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t bits = GetU64(bytes.data() + kHeaderBytes + 8 * i);
    std::memcpy(&r.sorted_log_prob[i], &bits, sizeof(bits));
  }
  if (!std::is_sorted(r.sorted_log_prob.begin(), r.sorted_log_prob.end())) {
    return absl::DataLossError(absl::StrCat(what, ": reference scores out of order"));
  }
  return r;
}

}  // namespace logp
