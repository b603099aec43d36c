// TorchScript export (models/export.h): the exported module's log_prob equals Model::Score and
// its sample is reproducible by seed, for every exportable family, loaded back with
// torch::jit::load as a user of the file would.
#include "models/export.h"

#include <gtest/gtest.h>
#include <torch/script.h>

#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "models/density_net.h"
#include "models/families/flows.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

struct Case {
  std::string name;
  v1::ModelSpec spec;
  DataShape shape;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

RecordMatrix RandomRecords(const DataShape& s, int64_t n, uint64_t seed, double hi = 0) {
  RecordMatrix m = RecordMatrix::Empty(s.kind, s.dim, s.num_categories).value();
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < n * s.dim; ++i) {
    if (s.kind == v1::DATA_KIND_CONTINUOUS) {
      m.f32.push_back(hi > 0 ? std::floor(std::uniform_real_distribution<float>(0, hi)(rng))
                             : std::normal_distribution<float>(0.3f, 1.5f)(rng));
    } else {
      m.u8.push_back(static_cast<uint8_t>(rng() % s.num_categories));
    }
  }
  m.rows = n;
  return m;
}

std::vector<Case> Cases() {
  const DataShape binary{v1::DATA_KIND_BINARY, 6, 2}, cat{v1::DATA_KIND_CATEGORICAL, 5, 4},
      cont{v1::DATA_KIND_CONTINUOUS, 3, 0};
  std::vector<Case> out;
  auto add = [&](const std::string& name, const DataShape& shape, auto fill) {
    Case c{name, {}, shape};
    fill(&c.spec);
    out.push_back(c);
  };
  add("bernoulli", binary, [](v1::ModelSpec* s) { s->set_family(v1::MODEL_FAMILY_BERNOULLI); });
  add("categorical", cat, [](v1::ModelSpec* s) { s->set_family(v1::MODEL_FAMILY_CATEGORICAL); });
  add("gaussian", cont, [](v1::ModelSpec* s) { s->set_family(v1::MODEL_FAMILY_GAUSSIAN); });
  add("mixture_diagonal", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
    s->mutable_gaussian_mixture()->set_components(3);
  });
  add("mixture_full", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
    s->mutable_gaussian_mixture()->set_components(2);
    s->mutable_gaussian_mixture()->set_covariance(v1::COVARIANCE_TYPE_FULL);
  });
  add("fvsbn", binary, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_FVSBN);
    s->mutable_fvsbn()->set_order(v1::VARIABLE_ORDER_RANDOM);
    s->mutable_fvsbn()->set_order_seed(3);
  });
  add("nade", binary, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_NADE);
    s->mutable_nade()->set_hidden_units(7);
    s->mutable_nade()->set_order(v1::VARIABLE_ORDER_RANDOM);
  });
  add("made_binary", binary, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MADE);
    s->mutable_made()->set_hidden_units(9);
  });
  add("made_binary_masks", binary, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MADE);
    s->mutable_made()->set_hidden_units(9);
    s->mutable_made()->set_hidden_layers(2);
    s->mutable_made()->set_num_masks(3);
    s->mutable_made()->set_direct_connections(true);
  });
  add("made_categorical", cat, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MADE);
    s->mutable_made()->set_hidden_units(9);
    s->mutable_made()->set_order(v1::VARIABLE_ORDER_RANDOM);
  });
  add("made_gaussian", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MADE);
    s->mutable_made()->set_hidden_units(9);
  });
  add("made_mixture", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MADE);
    s->mutable_made()->set_hidden_units(9);
    s->mutable_made()->set_conditional(v1::CONDITIONAL_TYPE_MIXTURE);
    s->mutable_made()->set_mixture_components(2);
  });
  add("gaussian_dequantized", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_GAUSSIAN);
    s->mutable_preprocessing()->set_dequantize(true);
    s->mutable_preprocessing()->set_levels(16);
  });
  add("made_logit", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MADE);
    s->mutable_made()->set_hidden_units(9);
    s->mutable_preprocessing()->set_dequantize(true);
    s->mutable_preprocessing()->set_logit(true);
    s->mutable_preprocessing()->set_levels(16);
  });
  add("vae_binary", binary, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_VAE);
    s->mutable_vae()->set_latent_dim(2);
    s->mutable_vae()->set_hidden_units(8);
  });
  add("vae_iwae", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_VAE);
    s->mutable_vae()->set_latent_dim(2);
    s->mutable_vae()->set_hidden_units(8);
    s->mutable_vae()->set_hidden_layers(2);
    s->mutable_vae()->set_importance_samples(10);
  });
  add("vae_logit", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_VAE);
    s->mutable_vae()->set_latent_dim(2);
    s->mutable_vae()->set_hidden_units(8);
    s->mutable_preprocessing()->set_dequantize(true);
    s->mutable_preprocessing()->set_logit(true);
    s->mutable_preprocessing()->set_levels(16);
  });
  add("maf", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MAF);
    s->mutable_maf()->set_flow_layers(3);
    s->mutable_maf()->set_hidden_units(8);
  });
  add("maf_batch_norm", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MAF);
    s->mutable_maf()->set_flow_layers(3);
    s->mutable_maf()->set_hidden_layers(2);
    s->mutable_maf()->set_hidden_units(8);
    s->mutable_maf()->set_batch_norm(true);
  });
  add("maf_logit", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_MAF);
    s->mutable_maf()->set_flow_layers(2);
    s->mutable_maf()->set_hidden_units(8);
    s->mutable_maf()->set_batch_norm(true);
    s->mutable_preprocessing()->set_dequantize(true);
    s->mutable_preprocessing()->set_logit(true);
    s->mutable_preprocessing()->set_levels(16);
  });
  add("realnvp", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_REALNVP);
    s->mutable_realnvp()->set_coupling_layers(3);
    s->mutable_realnvp()->set_hidden_units(8);
  });
  add("realnvp_batch_norm", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_REALNVP);
    s->mutable_realnvp()->set_coupling_layers(4);
    s->mutable_realnvp()->set_hidden_layers(1);
    s->mutable_realnvp()->set_hidden_units(8);
    s->mutable_realnvp()->set_batch_norm(true);
  });
  add("realnvp_dequantized", cont, [](v1::ModelSpec* s) {
    s->set_family(v1::MODEL_FAMILY_REALNVP);
    s->mutable_realnvp()->set_coupling_layers(2);
    s->mutable_realnvp()->set_hidden_units(8);
    s->mutable_realnvp()->set_batch_norm(true);
    s->mutable_preprocessing()->set_dequantize(true);
    s->mutable_preprocessing()->set_levels(16);
  });
  return out;
}

bool IsFlow(const Case& c) {
  return c.spec.family() == v1::MODEL_FAMILY_MAF || c.spec.family() == v1::MODEL_FAMILY_REALNVP;
}

// A model of the case with its parameters (and batch norms' running statistics) moved away from
// their initial values (zeros, ones for several families), so that a wrong weight shows.
std::unique_ptr<Model> PerturbedModel(const Case& c) {
  auto model = Model::Create(c.spec, c.shape, 5);
  if (!model.ok()) {
    ADD_FAILURE() << model.status();
    return nullptr;
  }
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  for (auto& p : NetOf(**model).parameters()) p.add_(0.3 * torch::randn_like(p));
  for (auto& b : NetOf(**model).named_buffers()) {
    if (absl::EndsWith(b.key(), "running_mean")) b.value().add_(0.5 * torch::randn_like(b.value()));
    if (absl::EndsWith(b.key(), "running_var")) {
      b.value().mul_(torch::exp(0.5 * torch::randn_like(b.value())));
    }
  }
  // As training leaves them: masked weights 0 (MADE with one mask).
  ForEachDensityNet(NetOf(**model), [](DensityNet& n) { n.FoldMasks(); });
  return std::move(*model);
}

class ExportTest : public testing::TestWithParam<Case> {};

TEST_P(ExportTest, LogProbEqualsScoreAndSamplesAreSeeded) {
  const Case& c = GetParam();
  std::unique_ptr<Model> model = PerturbedModel(c);
  ASSERT_NE(model, nullptr);
  absl::StatusOr<std::string> file = ExportTorchScript(*model);
  ASSERT_TRUE(file.ok()) << file.status();
  std::istringstream in(*file);
  torch::jit::Module m = torch::jit::load(in);

  const bool pre = c.spec.has_preprocessing();
  RecordMatrix records = RandomRecords(c.shape, 300, 9, pre ? 16 : 0);
  if (pre) records.f32[4] = 16;  // outside the support: -inf
  absl::StatusOr<Scores> want = model->Score(records, ScoreOptions{});
  ASSERT_TRUE(want.ok()) << want.status();
  torch::Tensor got = m.run_method("log_prob", RecordsToTensor(records)).toTensor();
  ASSERT_EQ(got.scalar_type(), torch::kDouble);
  ASSERT_EQ(got.sizes(), torch::IntArrayRef({records.rows}));
  // Exact families: equal to rounding. The VAE's scores are Monte Carlo estimates from other
  // draws than the server's: each has standard error se (the server's), so their difference has
  // sd sqrt(2) se; 5 of those per record (a false alarm in 300 records about once in 6000 runs).
  const bool monte_carlo = !want->standard_error.empty();
  double mean_diff = 0;
  for (int64_t i = 0; i < records.rows; ++i) {
    const double w = want->log_prob[i], g = got[i].item<double>();
    if (std::isinf(w)) {
      EXPECT_EQ(g, w) << i;
    } else if (monte_carlo) {
      EXPECT_NEAR(g, w, 5 * std::sqrt(2.0) * want->standard_error[i] + 1e-9)
          << c.name << " record " << i;
      mean_diff += (g - w) / records.rows;
    } else {
      EXPECT_NEAR(g, w, 1e-5 * std::abs(w)) << c.name << " record " << i;
    }
  }
  if (monte_carlo) {
    // Seeded: the same estimate twice.
    EXPECT_TRUE(torch::equal(got, m.run_method("log_prob", RecordsToTensor(records)).toTensor()));
    EXPECT_LT(std::abs(mean_diff), 1.0) << c.name;
  }
  if (pre) EXPECT_TRUE(std::isinf(want->log_prob[1]) && want->log_prob[1] < 0);

  torch::Tensor s1 = m.run_method("sample", 50, 7).toTensor();
  torch::Tensor s2 = m.run_method("sample", 50, 7).toTensor();
  torch::Tensor s3 = m.run_method("sample", 50, 8).toTensor();
  ASSERT_EQ(s1.sizes(), torch::IntArrayRef({50, c.shape.dim}));
  EXPECT_EQ(s1.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(s1, s2));
  EXPECT_FALSE(torch::equal(s1, s3));
  // Samples are records the model scores finitely (discrete: valid categories).
  torch::Tensor lp = m.run_method("log_prob", s1).toTensor();
  EXPECT_TRUE(torch::isfinite(lp).all().item<bool>()) << c.name;
  EXPECT_EQ(m.attr("dim").toInt(), c.shape.dim);
  EXPECT_EQ(m.attr("score_kind").toStringRef(), v1::ScoreKind_Name(model->score_kind()));
  if (c.spec.family() == v1::MODEL_FAMILY_VAE) {
    // The ELBO bounds the IWAE estimate from below on average (Burda et al.), here with 200
    // draws each.
    torch::Tensor x = RecordsToTensor(records).slice(0, 2, 40);
    torch::Tensor elbo = m.run_method("elbo", x, 200, 1).toTensor();
    torch::Tensor iwae = m.run_method("iwae", x, 200, 1).toTensor();
    EXPECT_LT(elbo.mean().item<double>(), iwae.mean().item<double>()) << c.name;
  } else {
    EXPECT_EQ(m.attr("score_kind").toStringRef(), "SCORE_KIND_EXACT");
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ExportTest, testing::ValuesIn(Cases()),
                         [](const testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(ExportErrorsTest, WrongDimRaises) {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_BERNOULLI);
  auto model = Model::Create(spec, DataShape{v1::DATA_KIND_BINARY, 4, 2}, 1);
  ASSERT_TRUE(model.ok());
  auto file = ExportTorchScript(**model);
  ASSERT_TRUE(file.ok()) << file.status();
  std::istringstream in(*file);
  torch::jit::Module m = torch::jit::load(in);
  EXPECT_THROW(m.run_method("log_prob", torch::zeros({2, 5})), std::exception);
  EXPECT_THROW(m.run_method("log_prob", torch::full({2, 4}, 2.0)), std::exception);
}

// A flow's sample is its inverse map of the normal draws: the module's sample(n, seed) equals
// FlowNet::Inverse of torch.randn after torch.manual_seed(seed) (MAF: one variable at a time in
// each layer's order; RealNVP: the couplings undone in reverse; batch norm's eval-mode map), and
// the forward map of log_prob takes the samples back to those draws.
TEST(ExportFlowsTest, SampleIsTheInverseOfTheNormalDraws) {
  for (const Case& c : Cases()) {
    if (!IsFlow(c) || c.spec.has_preprocessing()) continue;
    SCOPED_TRACE(c.name);
    std::unique_ptr<Model> model = PerturbedModel(c);
    ASSERT_NE(model, nullptr);
    absl::StatusOr<std::string> file = ExportTorchScript(*model);
    ASSERT_TRUE(file.ok()) << file.status();
    std::istringstream in(*file);
    torch::jit::Module m = torch::jit::load(in);
    torch::Tensor got = m.run_method("sample", 200, 3).toTensor();
    torch::NoGradGuard no_grad;
    auto& flow = dynamic_cast<FlowNet&>(NetOf(*model));
    torch::manual_seed(3);
    torch::Tensor u = torch::randn({200, c.shape.dim});
    torch::Tensor want = flow.Inverse(u);
    EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5))
        << "max difference " << (got - want).abs().max().item<double>();
    // And back: the forward map of the samples is the draws.
    EXPECT_TRUE(torch::allclose(flow.Forward(got).y, u, 1e-4, 1e-4));
  }
}

}  // namespace
}  // namespace logp
