// Writes the seed corpora of the fuzz targets: make_fuzz_corpus <dir> creates <dir>/<target>/.
// The committed corpora under fuzz/corpus/ were made with it; re-run it when a format changes.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"
#include "models/model.h"
#include "models/train.h"
#include "proto/cc/records.h"
#include "server/core/file_system.h"

namespace logp {
namespace {

void Write(const std::string& dir, const std::string& name, const std::string& bytes) {
  if (!FileSystem::Default()->MakeDirs(dir).ok()) std::abort();
  const std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
  std::printf("%6zu bytes  %s\n", bytes.size(), path.c_str());
}

template <typename T>
std::string Bytes(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
}

std::string F32(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// records_fuzzer raw mode: mode, kind, K (uint16), encoding, dim, num_records (uint64), bytes.
std::string RawRecords(uint8_t mode, v1::DataKind kind, uint16_t k, v1::Encoding enc, uint8_t dim,
                       uint64_t n, const std::string& data) {
  return std::string(1, static_cast<char>(mode)) + static_cast<char>(kind) + Bytes(k) +
         static_cast<char>(enc) + static_cast<char>(dim) + Bytes(n) + data;
}

void RecordSeeds(const std::string& dir) {
  Write(dir, "bitpacked_d10",
        RawRecords(0, v1::DATA_KIND_BINARY, 2, v1::ENCODING_BITPACKED, 10, 3,
                   std::string("\xA5\x40\xFF\xC0\x00\x00", 6)));
  Write(dir, "binary_uint8_d4",
        RawRecords(0, v1::DATA_KIND_BINARY, 2, v1::ENCODING_UINT8, 4, 2,
                   std::string("\1\0\1\1\0\0\0\1", 8)));
  Write(dir, "categorical_k5",
        RawRecords(0, v1::DATA_KIND_CATEGORICAL, 5, v1::ENCODING_UINT8, 3, 2,
                   std::string("\0\4\2\3\1\0", 6)));
  Write(dir, "categorical_k300_u16",
        RawRecords(2, v1::DATA_KIND_CATEGORICAL, 44, v1::ENCODING_UINT16_LE, 2, 2,
                   std::string("\x2B\x01\0\0\x05\0\x10\x01", 8)));
  Write(dir, "continuous_d3",
        RawRecords(0, v1::DATA_KIND_CONTINUOUS, 0, v1::ENCODING_FLOAT32_LE, 3, 2,
                   F32({1.5f, -2.f, 3.25e7f, 0.f, -0.f, 1e-30f})));
  Write(dir, "two_blocks_continuous",
        RawRecords(16, v1::DATA_KIND_CONTINUOUS, 0, v1::ENCODING_FLOAT32_LE, 2, 1,
                   F32({1.f, 2.f, 3.f, 4.f, 5.f, 6.f})));
  Write(dir, "huge_num_records",
        RawRecords(8, v1::DATA_KIND_CONTINUOUS, 0, v1::ENCODING_FLOAT32_LE, 1,
                   (uint64_t{1} << 62) + 1, F32({1.f})));
  v1::RecordBlock block;
  block.set_encoding(v1::ENCODING_BITPACKED);
  block.set_num_records(2);
  block.set_dim(12);
  block.set_data(std::string("\xAB\xC0\x12\x30", 4));
  Write(dir, "block_bitpacked", std::string("\x01\x01\x02\x00", 4) + block.SerializeAsString());
}

// data_files_fuzzer: format (0 IDX, 1 NPY, 2 CSV), flags (kind in the low 2 bits), K (uint16),
// max_records, then the file.
std::string FileInput(uint8_t format, uint8_t flags, uint16_t k, uint8_t max_records,
                      const std::string& file) {
  return std::string(1, static_cast<char>(format)) + static_cast<char>(flags) + Bytes(k) +
         static_cast<char>(max_records) + file;
}

std::string Npy(const std::string& descr, const std::string& shape, const std::string& data) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 16 != 0) header += ' ';
  header += '\n';
  const uint16_t len = static_cast<uint16_t>(header.size());
  return std::string("\x93NUMPY\x01\x00", 8) + Bytes(len) + header + data;
}

void DataFileSeeds(const std::string& dir) {
  const uint8_t cont = v1::DATA_KIND_CONTINUOUS, bin = v1::DATA_KIND_BINARY,
                cat = v1::DATA_KIND_CATEGORICAL;
  std::string idx3("\0\0\x08\x03\0\0\0\x03\0\0\0\x02\0\0\0\x02", 16);
  idx3 += std::string("\x00\xFF\x80\x7F\x01\x02\x03\x04\xC8\x00\x10\x20", 12);
  Write(dir, "idx3_images_binarized", FileInput(0, bin | 4 | (15 << 3), 0, 0, idx3));
  Write(dir, "idx3_continuous_max2", FileInput(0, cont, 0, 2, idx3));
  Write(dir, "idx1_categorical",
        FileInput(0, cat | 0x40, 0, 0, std::string("\0\0\x08\x01\0\0\0\x04\x03\x01\x00\x02", 12)));
  Write(dir, "npy_u1_2d",
        FileInput(1, bin, 0, 0, Npy("|u1", "(2, 3)", std::string("\1\0\1\0\0\1", 6))));
  Write(dir, "npy_f4_2d",
        FileInput(1, cont, 0, 0, Npy("<f4", "(2, 2)", F32({1.f, -2.5f, 3.f, 1e9f}))));
  const double d[] = {0, 1, 2, 3};
  Write(dir, "npy_f8_4d_categorical",
        FileInput(1, cat, 5, 0,
                  Npy("<f8", "(1, 2, 2, 1)", std::string(reinterpret_cast<const char*>(d), 32))));
  const int32_t i4[] = {7, 0, 300, 2};
  Write(dir, "npy_i4_categorical_k301",
        FileInput(1, cat, 301, 0,
                  Npy("<i4", "(2, 2)", std::string(reinterpret_cast<const char*>(i4), 16))));
  Write(dir, "csv_header_continuous",
        FileInput(2, cont, 0, 0, "x,y,z\n1.5, -2, 3e4\r\n0,0.25,-1e-3\n\n7,8,9\n"));
  Write(dir, "csv_binary", FileInput(2, bin, 0, 0, "0,1,1,0\n1,1,0,0\n"));
}

// model_fuzzer: mode (0 model file, 1 checkpoint), then the bytes.
std::unique_ptr<Model> MakeModel(const v1::ModelSpec& spec, const DataShape& shape) {
  absl::StatusOr<std::unique_ptr<Model>> m = Model::Create(spec, shape, 1);
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
    std::abort();
  }
  return std::move(*m);
}

class CheckpointGrabber : public TrainObserver {
 public:
  bool CheckpointDue(int64_t) override { return bytes.empty(); }
  absl::Status OnCheckpoint(TrainCheckpoint c) override {
    bytes = std::move(c.bytes);
    return absl::OkStatus();
  }
  std::string bytes;
};

void ModelSeeds(const std::string& dir) {
  const DataShape bin6{v1::DATA_KIND_BINARY, 6, 2}, cont2{v1::DATA_KIND_CONTINUOUS, 2, 0};
  v1::ModelSpec bernoulli;
  bernoulli.set_family(v1::MODEL_FAMILY_BERNOULLI);
  Write(dir, "bernoulli_d6", std::string(1, '\0') + *MakeModel(bernoulli, bin6)->Serialize());
  v1::ModelSpec made;
  made.set_family(v1::MODEL_FAMILY_MADE);
  made.mutable_made()->set_hidden_layers(1);
  made.mutable_made()->set_hidden_units(4);
  made.mutable_made()->set_num_masks(1);
  Write(dir, "made_d6_h4", std::string(1, '\0') + *MakeModel(made, bin6)->Serialize());
  v1::ModelSpec mixture;
  mixture.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  mixture.mutable_gaussian_mixture()->set_components(2);
  Write(dir, "mixture_d2_c2", std::string(1, '\0') + *MakeModel(mixture, cont2)->Serialize());
  v1::ModelSpec maf;
  maf.set_family(v1::MODEL_FAMILY_MAF);
  maf.mutable_maf()->set_flow_layers(1);
  maf.mutable_maf()->set_hidden_layers(1);
  maf.mutable_maf()->set_hidden_units(2);
  Write(dir, "maf_d2", std::string(1, '\0') + *MakeModel(maf, cont2)->Serialize());
  v1::ModelSpec vae;
  vae.set_family(v1::MODEL_FAMILY_VAE);
  vae.mutable_vae()->set_latent_dim(1);
  vae.mutable_vae()->set_hidden_layers(1);
  vae.mutable_vae()->set_hidden_units(2);
  vae.mutable_vae()->set_importance_samples(2);
  Write(dir, "vae_d6", std::string(1, '\0') + *MakeModel(vae, bin6)->Serialize());

  // A checkpoint of one MADE training step.
  RecordMatrix data = *RecordMatrix::Empty(v1::DATA_KIND_BINARY, 6, 2);
  for (int r = 0; r < 8; ++r) {
    for (int c = 0; c < 6; ++c) data.u8.push_back(static_cast<uint8_t>((r >> (c % 3)) & 1));
    ++data.rows;
  }
  TrainOptions options;
  options.epochs = 1;
  options.batch_size = 4;
  options.max_steps = 1;
  CheckpointGrabber grabber;
  absl::StatusOr<TrainResult> result = Train(made, data, data, options, &grabber);
  if (!result.ok() || grabber.bytes.empty()) {
    std::fprintf(stderr, "no checkpoint: %s\n", result.status().ToString().c_str());
    std::abort();
  }
  // ModelFromCheckpoint reads only the header and the model part: the training state (mostly
  // the generators' 5 KB states) is left out to keep the seed small.
  uint64_t len;
  std::memcpy(&len, grabber.bytes.data() + 8, sizeof(len));
  Write(dir, "checkpoint_made_d6", std::string(1, '\1') + grabber.bytes.substr(0, 16 + len));
}

// create_dataset_fuzzer: cancel byte, then (uint16 length, CreateDatasetRequest) messages.
std::string Stream(const std::vector<v1::CreateDatasetRequest>& requests) {
  std::string out(1, '\xFF');
  for (const auto& r : requests) {
    const std::string bytes = r.SerializeAsString();
    out += Bytes(static_cast<uint16_t>(bytes.size())) + bytes;
  }
  return out;
}

v1::CreateDatasetRequest Header(v1::DataKind kind, uint32_t dim, uint64_t n, uint32_t k = 0) {
  v1::CreateDatasetRequest r;
  r.mutable_header()->set_name("seed");
  r.mutable_header()->set_kind(kind);
  r.mutable_header()->set_dim(dim);
  r.mutable_header()->set_num_records(n);
  r.mutable_header()->set_num_categories(k);
  return r;
}

v1::CreateDatasetRequest Chunk(v1::Encoding enc, uint32_t dim, uint64_t n, std::string data) {
  v1::CreateDatasetRequest r;
  r.mutable_chunk()->set_encoding(enc);
  r.mutable_chunk()->set_dim(dim);
  r.mutable_chunk()->set_num_records(n);
  r.mutable_chunk()->set_data(std::move(data));
  return r;
}

void CreateDatasetSeeds(const std::string& dir) {
  v1::CreateDatasetRequest image = Header(v1::DATA_KIND_BINARY, 4, 3);
  auto* shape = image.mutable_header()->mutable_image_shape();
  shape->set_height(2);
  shape->set_width(2);
  shape->set_channels(1);
  Write(dir, "binary_image_2x2",
        Stream({image, Chunk(v1::ENCODING_BITPACKED, 4, 2, "\xA0\x50"),
                Chunk(v1::ENCODING_UINT8, 4, 1, std::string("\1\1\0\1", 4))}));
  Write(dir, "categorical_k3",
        Stream({Header(v1::DATA_KIND_CATEGORICAL, 3, 2, 3),
                Chunk(v1::ENCODING_UINT8, 3, 2, std::string("\0\1\2\2\1\0", 6))}));
  Write(dir, "categorical_k1000_u16",
        Stream({Header(v1::DATA_KIND_CATEGORICAL, 1, 2, 1000),
                Chunk(v1::ENCODING_UINT16_LE, 1, 2, std::string("\xE7\x03\x00\x00", 4))}));
  Write(dir, "continuous_two_chunks",
        Stream({Header(v1::DATA_KIND_CONTINUOUS, 2, 3),
                Chunk(v1::ENCODING_FLOAT32_LE, 2, 1, F32({1.f, 2.f})),
                Chunk(v1::ENCODING_FLOAT32_LE, 2, 2, F32({-3.f, 4.5f, 0.f, 1e20f}))}));
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  logp::RecordSeeds(dir + "/records");
  logp::DataFileSeeds(dir + "/data_files");
  logp::ModelSeeds(dir + "/model");
  logp::CreateDatasetSeeds(dir + "/create_dataset");
  return 0;
}
