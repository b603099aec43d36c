// TorchScript export: the net's tensors become buffers of a torch::jit::Module and each family's
// log_prob and sampler are written out as TorchScript source, mirroring the family's C++ code
// (models/families/) operation for operation so that the scores agree to rounding.
#include "models/export.h"

#include <torch/script.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "models/density_net.h"
#include "models/export_internal.h"
#include "models/families/flows.h"
#include "models/families/fvsbn.h"
#include "models/families/made.h"
#include "models/families/nade.h"
#include "models/families/preprocessing.h"
#include "models/families/vae.h"
#include "proto/cc/records.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace export_internal {

std::string Lit(double v) {
  if (std::isinf(v)) return v > 0 ? "float(\"inf\")" : "float(\"-inf\")";
  std::string s = absl::StrFormat("%.17g", v);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

}  // namespace export_internal

namespace {

using export_internal::FamilySource;
using export_internal::Lit;

std::string IntList(const std::vector<int64_t>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
}

// In module.define, `torch.` names aten operators (torch.softplus is aten::softplus, as
// torch::nn::functional::softplus calls it); dtypes are spelled by .float() and .double().
const char* kBernoulliLl = "(x * logits - torch.softplus(logits)).sum(1)";

absl::StatusOr<FamilySource> BernoulliSource(const std::string& p, int64_t dim) {
  FamilySource s;
  s.methods = absl::StrCat(R"(
def _inner_log_prob(self, x: Tensor) -> Tensor:
    logits = self.)",
                           p, R"(logits
    return )",
                           kBernoulliLl, R"(

def _inner_sample(self, n: int) -> Tensor:
    u = torch.rand([n, )",
                           dim, R"(])
    return (u < torch.sigmoid(self.)",
                           p, R"(logits)).float()
)");
  return s;
}

absl::StatusOr<FamilySource> CategoricalSource(const std::string& p, int64_t dim) {
  FamilySource s;
  s.methods = absl::StrReplaceAll(R"(
def _inner_log_prob(self, x: Tensor) -> Tensor:
    lp = torch.log_softmax(self.PLP, 1)
    idx = x.long().unsqueeze(2)
    return lp.unsqueeze(0).expand(x.size(0), lp.size(0), lp.size(1)).gather(2, idx).squeeze(2).sum(1)

def _inner_sample(self, n: int) -> Tensor:
    if n == 0:
        return torch.zeros([0, DIM])
    probs = torch.softmax(self.PLP, 1).double()
    return torch.multinomial(probs, n, True).t().float().contiguous()
)",
                                  {{"PLP", p + "log_probs"}, {"DIM", absl::StrCat(dim)}});
  return s;
}

absl::StatusOr<FamilySource> GaussianSource(const std::string& p, double min_variance) {
  FamilySource s;
  s.methods = absl::StrReplaceAll(R"(
def _inner_log_prob(self, x: Tensor) -> Tensor:
    log_var = self.Plog_var.clamp_min(LOG_MIN_VAR)
    z2 = (x - self.Pmean).pow(2) * torch.exp(-log_var)
    return -0.5 * (z2 + log_var + LOG_2PI).sum(1)

def _inner_sample(self, n: int) -> Tensor:
    eps = torch.randn([n, self.Pmean.size(0)])
    var = torch.exp(self.Plog_var).clamp_min(MIN_VAR)
    return self.Pmean + torch.sqrt(var) * eps
)",
                                  {{"Plog_var", p + "log_var"},
                                   {"Pmean", p + "mean"},
                                   {"LOG_MIN_VAR", Lit(std::log(min_variance))},
                                   {"MIN_VAR", Lit(min_variance)},
                                   {"LOG_2PI", Lit(std::log(2.0 * M_PI))}});
  return s;
}

absl::StatusOr<FamilySource> MixtureSource(const std::string& p, int64_t dim, bool full,
                                           double min_variance) {
  FamilySource s;
  const std::string chol =
      full ? "torch.tril(self.Plower, -1) + torch.diag_embed(scales)" : "torch.diag_embed(scales)";
  const std::string quad =
      full
          ? R"(z = torch.linalg_solve_triangular(torch.tril(self.Plower, -1) + torch.diag_embed(scales), diff.transpose(1, 2), upper=False)
    quad = z.pow(2).sum(1))"
          : "quad = (diff / scales.unsqueeze(1)).pow(2).sum(2)";
  s.methods = absl::StrReplaceAll(absl::StrCat(R"(
def _scales(self) -> Tensor:
    return torch.exp(self.Plog_scale.clamp_min(HALF_LOG_MIN_VAR))

def _inner_log_prob(self, x: Tensor) -> Tensor:
    scales = self._scales()
    log_w = torch.log_softmax(self.Plogits, 0)
    diff = x.unsqueeze(0) - self.Pmeans.unsqueeze(1)
    )",
                                               quad, R"(
    log_det = torch.log(scales).sum(1)
    joint = log_w.unsqueeze(1) - 0.5 * quad - log_det.unsqueeze(1) - 0.5 * DIM * LOG_2PI
    return torch.logsumexp(joint, 0)

def _inner_sample(self, n: int) -> Tensor:
    if n == 0:
        return torch.zeros([0, DIM])
    weights = torch.softmax(self.Plogits.double(), 0)
    comp = torch.multinomial(weights, n, True)
    eps = torch.randn([n, DIM]).double()
    scales = self._scales()
    chol = ()",
                                               chol, R"().double()
    mu = self.Pmeans.double().index_select(0, comp)
    l = chol.index_select(0, comp)
    return (mu + torch.matmul(l, eps.unsqueeze(2)).squeeze(2)).float()
)"),
                                  {{"Plog_scale", p + "log_scale"},
                                   {"Plogits", p + "logits"},
                                   {"Pmeans", p + "means"},
                                   {"Plower", p + "lower"},
                                   {"HALF_LOG_MIN_VAR", Lit(0.5 * std::log(min_variance))},
                                   {"DIM", absl::StrCat(dim)},
                                   {"LOG_2PI", Lit(std::log(2.0 * M_PI))}});
  return s;
}

torch::Tensor LongTensor(const std::vector<int64_t>& v) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kLong));
}

absl::StatusOr<FamilySource> FvsbnSource(const std::string& p, const FvsbnImpl& net) {
  FamilySource s;
  const int64_t dim = static_cast<int64_t>(net.order().size());
  s.methods = absl::StrReplaceAll(absl::StrCat(R"(
def _inner_log_prob(self, x: Tensor) -> Tensor:
    logits = torch.linear(x, self.Pweight * self.Pmask, self.Pbias)
    return )",
                                               kBernoulliLl, R"(

def _inner_sample(self, n: int) -> Tensor:
    u = torch.rand([n, DIM])
    x = torch.zeros([n, DIM])
    w = self.Pweight * self.Pmask
    order = ORDER
    for d in order:
        logit = torch.mv(x, w[d]) + self.Pbias[d]
        x[:, d] = (u[:, d] < torch.sigmoid(logit)).float()
    return x
)"),
                                  {{"Pweight", p + "weight"},
                                   {"Pmask", p + "mask"},
                                   {"Pbias", p + "bias"},
                                   {"DIM", absl::StrCat(dim)},
                                   {"ORDER", IntList(net.order())}});
  return s;
}

absl::StatusOr<FamilySource> NadeSource(const std::string& p, const NadeImpl& net) {
  FamilySource s;
  const std::vector<int64_t>& order = net.order();
  const int64_t dim = static_cast<int64_t>(order.size());
  std::vector<int64_t> position(dim);
  for (int64_t i = 0; i < dim; ++i) position[order[i]] = i;
  s.buffers = {{"export_order", LongTensor(order)}, {"export_inverse", LongTensor(position)}};
  // The cumulative-sum form of NadeImpl::OrderedLogitsByCumsum, in row chunks of at most
  // NadeImpl::kMaxChunkElements intermediates (the same function as the C++ recurrence).
  s.methods = absl::StrReplaceAll(absl::StrCat(R"(
def _nade_logits(self, x: Tensor) -> Tensor:
    xo = x.index_select(1, self.export_order)
    wo = self.PW.index_select(1, self.export_order).t()
    contrib = xo.unsqueeze(2) * wo.unsqueeze(0)
    a = torch.cumsum(contrib, 1) - contrib + self.Pc
    h = torch.sigmoid(a)
    vo = self.PV.index_select(0, self.export_order)
    ordered = (h * vo.unsqueeze(0)).sum(2) + self.Pb.index_select(0, self.export_order)
    return ordered.index_select(1, self.export_inverse)

def _inner_log_prob(self, x: Tensor) -> Tensor:
    chunk = max(1, CHUNK_ELEMENTS // max(1, DIM * self.Pc.size(0)))
    parts: List[Tensor] = []
    for s in range(0, x.size(0), chunk):
        parts.append(self._nade_logits(x[s:s + chunk]))
    if len(parts) == 0:
        return torch.zeros([0])
    logits = torch.cat(parts, 0)
    return )",
                                               kBernoulliLl, R"(

def _inner_sample(self, n: int) -> Tensor:
    u = torch.rand([n, DIM])
    x = torch.zeros([n, DIM])
    a = self.Pc.unsqueeze(0).expand(n, self.Pc.size(0)).clone()
    order = ORDER
    for d in order:
        logit = torch.mv(torch.sigmoid(a), self.PV[d]) + self.Pb[d]
        xd = (u[:, d] < torch.sigmoid(logit)).float()
        x[:, d] = xd
        a += xd.unsqueeze(1) * self.PW[:, d].unsqueeze(0)
    return x
)"),
                                  {{"PW", p + "W"},
                                   {"PV", p + "V"},
                                   {"Pc", p + "c"},
                                   {"Pb", p + "b"},
                                   {"DIM", absl::StrCat(dim)},
                                   {"CHUNK_ELEMENTS", absl::StrCat(NadeImpl::kMaxChunkElements)},
                                   {"ORDER", IntList(order)}});
  return s;
}

absl::StatusOr<FamilySource> MadeSource(const std::string& p, const MadeImpl& net,
                                        const v1::MadeParams& m, const DataShape& shape) {
  FamilySource s;
  const int64_t dim = shape.dim, masks = net.num_masks();
  const bool direct = m.direct_connections();
  const int64_t hidden = m.hidden_layers();
  const int64_t c = m.mixture_components();
  int64_t params_per_var = 1;
  std::string encode = "x.float()";
  std::string ll, draw;
  switch (shape.kind) {
    case v1::DATA_KIND_CATEGORICAL:
      params_per_var = shape.num_categories;
      encode = absl::StrCat("torch.one_hot(x.long(), ", shape.num_categories,
                            ").float().reshape(x.size(0), ", dim * shape.num_categories, ")");
      ll = "return torch.log_softmax(params, 2).gather(2, x.long().unsqueeze(2)).squeeze(2)";
      draw =
          "return torch.multinomial(torch.softmax(params, 1), 1, "
          "True).squeeze(1).float()";
      break;
    case v1::DATA_KIND_CONTINUOUS:
      if (m.conditional() == v1::CONDITIONAL_TYPE_MIXTURE) {
        params_per_var = 3 * c;
        ll = absl::StrReplaceAll(
            R"(log_w = torch.log_softmax(params[:, :, 0:C], 2)
    mean = params[:, :, C:C2]
    log_std = params[:, :, C2:C3].clamp(-7.0, 7.0)
    z = (x.unsqueeze(2) - mean) * torch.exp(-log_std)
    return torch.logsumexp(log_w - HALF_LOG_2PI - log_std - 0.5 * z * z, 2))",
            {{"C3", absl::StrCat(3 * c)}, {"C2", absl::StrCat(2 * c)}, {"C", absl::StrCat(c)}});
        draw = absl::StrReplaceAll(
            R"(k = torch.multinomial(torch.softmax(params[:, 0:C], 1), 1, True)
    mean = params[:, C:C2].gather(1, k).squeeze(1)
    log_std = params[:, C2:C3].gather(1, k).squeeze(1)
    return mean + torch.exp(log_std.clamp(-7.0, 7.0)) * torch.randn([params.size(0)]))",
            {{"C3", absl::StrCat(3 * c)}, {"C2", absl::StrCat(2 * c)}, {"C", absl::StrCat(c)}});
      } else {
        params_per_var = 2;
        ll = R"(mean = params[:, :, 0]
    log_std = params[:, :, 1].clamp(-7.0, 7.0)
    z = (x - mean) * torch.exp(-log_std)
    return -HALF_LOG_2PI - log_std - 0.5 * z * z)";
        draw = R"(mean = params[:, 0]
    log_std = params[:, 1]
    return mean + torch.exp(log_std.clamp(-7.0, 7.0)) * torch.randn([params.size(0)]))";
      }
      break;
    default:
      ll = R"(logits = params[:, :, 0]
    return x * logits - torch.softplus(logits))";
      draw = R"(return (torch.rand([params.size(0)]) < torch.sigmoid(params[:, 0])).float())";
  }
  // With one mask the masks are folded into the weights (MadeImpl::FoldMasks); otherwise each
  // weight is multiplied by its layer's mask, stacked over masks as buffer export_mask<l>.
  const bool folded = masks == 1;
  if (!folded) {
    std::vector<std::vector<torch::Tensor>> per_layer;
    for (int64_t k = 0; k < masks; ++k) {
      std::vector<torch::Tensor> ms = net.MasksFor(k);
      per_layer.resize(ms.size());
      for (size_t l = 0; l < ms.size(); ++l) per_layer[l].push_back(ms[l]);
    }
    for (size_t l = 0; l < per_layer.size(); ++l) {
      s.buffers.push_back({absl::StrCat("export_mask", l), torch::stack(per_layer[l], 0)});
    }
  }
  auto weight = [&](const std::string& name, int64_t l) {
    return folded ? absl::StrCat("self.", p, name, "_weight")
                  : absl::StrCat("self.", p, name, "_weight * self.export_mask", l, "[mask]");
  };
  std::string forward = "    h = encoded\n";
  for (int64_t l = 0; l < hidden; ++l) {
    absl::StrAppend(&forward, "    h = torch.relu(torch.linear(h, ",
                    weight(absl::StrCat("hidden", l), l), ", self.", p, "hidden", l, "_bias))\n");
  }
  absl::StrAppend(&forward, "    out = torch.linear(h, ", weight("output", hidden), ", self.", p,
                  "output_bias)\n");
  if (direct) {
    absl::StrAppend(&forward, "    out = out + torch.linear(encoded, ",
                    weight("direct", hidden + 1), ")\n");
  }
  absl::StrAppend(&forward, "    return out.reshape(encoded.size(0), ", dim, ", ", params_per_var,
                  ")\n");
  std::string log_prob =
      "    return self._made_ll(self._made_forward(self._encode(x), 0), x).sum(1)\n";
  if (!folded) {
    log_prob = absl::StrCat(R"(    enc = self._encode(x)
    per_mask: List[Tensor] = []
    for k in range()",
                            masks, R"():
        per_mask.append(self._made_ll(self._made_forward(enc, k), x).sum(1))
    return torch.logsumexp(torch.stack(per_mask, 0), 0) - )",
                            Lit(std::log(static_cast<double>(masks))), "\n");
  }
  s.methods = absl::StrReplaceAll(absl::StrCat(R"(
def _encode(self, x: Tensor) -> Tensor:
    return )",
                                               encode, R"(

def _made_forward(self, encoded: Tensor, mask: int) -> Tensor:
)",
                                               forward, R"(
def _made_ll(self, params: Tensor, x: Tensor) -> Tensor:
    )",
                                               ll, R"(

def _made_draw(self, params: Tensor) -> Tensor:
    )",
                                               draw, R"(

def _inner_log_prob(self, x: Tensor) -> Tensor:
)",
                                               log_prob, R"(
def _inner_sample(self, n: int) -> Tensor:
    x = torch.zeros([n, DIM])
    order = ORDER
    for d in order:
        params = self._made_forward(self._encode(x), 0)[:, d]
        x[:, d] = self._made_draw(params)
    return x
)"),
                                  {{"HALF_LOG_2PI", Lit(0.5 * std::log(2.0 * M_PI))},
                                   {"DIM", absl::StrCat(dim)},
                                   {"ORDER", IntList(net.order(0))}});
  return s;
}

absl::StatusOr<FamilySource> VaeSource(const std::string& p, const v1::VaeParams& m,
                                       const DataShape& shape) {
  FamilySource s;
  const bool binary = shape.kind == v1::DATA_KIND_BINARY;
  auto mlp = [&](const std::string& name) {
    std::string out = absl::StrCat("def _", name, "(self, h: Tensor) -> Tensor:\n");
    for (int l = 0; l < m.hidden_layers(); ++l) {
      absl::StrAppend(&out, "    h = torch.relu(torch.linear(h, self.", p, name, l,
                      "_weight, self.", p, name, l, "_bias))\n");
    }
    absl::StrAppend(&out, "    return torch.linear(h, self.", p, name, "_out_weight, self.", p,
                    name, "_out_bias)\n\n");
    return out;
  };
  const std::string ll = binary ? "    return (x * out - torch.softplus(out)).sum(-1)\n"
                                : absl::StrCat("    log_std = self.", p, R"(log_std.clamp(-7.0, 7.0)
    return (-0.5 * ((x - out) * torch.exp(-log_std)).pow(2) - log_std - HALF_LOG_2PI).sum(-1)
)");
  const std::string draw =
      binary ? "    return (torch.rand([n, DIM]) < torch.sigmoid(out)).float()\n"
             : absl::StrCat("    return out + torch.exp(self.", p,
                            "log_std.clamp(-7.0, 7.0)) * torch.randn([n, DIM])\n");
  // Draws of z per record in chunks of records, as VaeImpl::OverDraws (at most kRowsPerChunk
  // rows of draws x records at once). mode 0: ELBO (KL analytic, the expectation as the mean of
  // `draws` draws); mode 1: the IWAE estimate with `draws` importance samples.
  s.methods = absl::StrReplaceAll(absl::StrCat(mlp("encoder"), mlp("decoder"), R"(
def _vae_ll(self, x: Tensor, z: Tensor) -> Tensor:
    out = self._decoder(z)
)",
                                               ll, R"(
def _vae_rows(self, x: Tensor, mode: int, draws: int) -> Tensor:
    h = self._encoder(x)
    mu = h[:, 0:LATENT]
    log_var = h[:, LATENT:LATENT2]
    std = torch.exp(0.5 * log_var)
    eps = torch.randn([draws, x.size(0), LATENT])
    z = mu + std * eps
    if mode == 0:
        kl = 0.5 * (mu.pow(2) + torch.exp(log_var) - 1 - log_var).sum(-1)
        return self._vae_ll(x, z).double().mean(0) - kl.double()
    log_q = (-0.5 * eps.pow(2) - 0.5 * log_var - HALF_LOG_2PI).sum(-1)
    log_prior = (-0.5 * z.pow(2) - HALF_LOG_2PI).sum(-1)
    log_w = (self._vae_ll(x, z) + log_prior - log_q).double()
    return torch.logsumexp(log_w, 0) - torch.log(torch.full([1], float(draws))).double()

def _inner_scores(self, x: Tensor, mode: int, draws: int, seed: int) -> Tensor:
    torch.manual_seed(seed)
    rows = max(1, ROWS_PER_CHUNK // max(1, draws))
    parts: List[Tensor] = []
    for s in range(0, x.size(0), rows):
        parts.append(self._vae_rows(x[s:s + rows], mode, draws))
    if len(parts) == 0:
        return torch.zeros([0]).double()
    return torch.cat(parts, 0)

def _inner_sample(self, n: int) -> Tensor:
    z = torch.randn([n, LATENT])
    out = self._decoder(z)
)",
                                               draw),
                                  {{"HALF_LOG_2PI", Lit(0.5 * std::log(2.0 * M_PI))},
                                   {"LATENT2", absl::StrCat(2 * m.latent_dim())},
                                   {"LATENT", absl::StrCat(m.latent_dim())},
                                   {"ROWS_PER_CHUNK", "65536"},
                                   {"DIM", absl::StrCat(shape.dim)}});
  return s;
}

// The shape checks and preprocessing around the family's methods: log_prob, sample and info.
// `default_call`: log_prob's (mode, draws, seed) arguments of _data_scores; `vae` adds elbo
// and iwae.
std::string OuterSource(const v1::ModelSpec& spec, const DataShape& shape,
                        const std::string& default_call, bool vae) {
  const bool pre = spec.has_preprocessing();
  const v1::Preprocessing& pp = spec.preprocessing();
  const double levels = pp.levels(), alpha = pp.logit_alpha();
  std::string check = absl::StrCat(R"(
    assert x.dim() == 2 and x.size(1) == )",
                                   shape.dim, R"(, "records must be [N, )", shape.dim, R"(]"
    x = x.float()
)");
  if (shape.kind != v1::DATA_KIND_CONTINUOUS) {
    absl::StrAppend(&check, R"(    assert not bool(((x != torch.floor(x)) | (x < 0) | (x > )",
                    shape.num_categories - 1, R"()).any()), "values must be integers in [0, )",
                    shape.num_categories, ")\"\n");
  }
  std::string body;
  if (pre) {
    const double scale = (1 - 2 * alpha) / levels;
    body = absl::StrCat("    xp = x.double()", pp.dequantize() ? " + 0.5" : "", R"(
    inside = ((xp >= 0) & (xp <= LEVELS)).all(1)
    xc = xp.clamp(0, LEVELS)
)");
    if (pp.logit()) {
      absl::StrAppend(&body, R"(    log_s = torch.log(ALPHA + SCALE * xc)
    log_1ms = torch.log(ALPHA + SCALE * (LEVELS - xc))
    y = log_s - log_1ms
    log_det = (LOG_SCALE - log_s - log_1ms).sum(1)
)");
    } else {
      absl::StrAppend(&body, R"(    y = xc
    log_det = torch.zeros([x.size(0)]).double()
)");
    }
    absl::StrAppend(&body,
                    R"(    lp = self._inner_scores(y.float(), mode, draws, seed).double() + log_det
    lp = torch.where(inside, lp, torch.full_like(lp, float("-inf")))
)");
    body = absl::StrReplaceAll(body, {{"LEVELS", Lit(levels)},
                                      {"ALPHA", Lit(alpha)},
                                      {"LOG_SCALE", Lit(std::log(scale))},
                                      {"SCALE", Lit(scale)}});
  } else {
    body = "    lp = self._inner_scores(x, mode, draws, seed).double()\n";
  }
  if (shape.kind == v1::DATA_KIND_CONTINUOUS) {
    // As Model::Score: overflowing records score -inf, never NaN or +inf.
    absl::StrAppend(&body,
                    "    lp = torch.nan_to_num(lp, float(\"-inf\"), float(\"-inf\"), "
                    "float(\"-inf\"))\n");
  }
  std::string sample = "    return self._inner_sample(n)\n";
  if (pre) {
    const std::string xp = pp.logit() ? absl::StrCat("(torch.sigmoid(y) - ", Lit(alpha), ") * ",
                                                     Lit(levels / (1 - 2 * alpha)))
                                      : "y";
    const std::string out =
        pp.dequantize()
            ? absl::StrCat("torch.floor(xp).clamp(0, ", Lit(levels - 1), ").float()")
            : absl::StrCat("xp.clamp(0, ", Lit(std::nextafter(static_cast<float>(levels), 0.0f)),
                           ").float()");
    sample = absl::StrCat("    y = self._inner_sample(n).double()\n    xp = ", xp, "\n    return ",
                          out, "\n");
  }
  return absl::StrCat(R"(
def _data_scores(self, x: Tensor, mode: int, draws: int, seed: int) -> Tensor:)",
                      check, body, R"(    return lp

def log_prob(self, x: Tensor) -> Tensor:
    return self._data_scores(x, )",
                      default_call, R"()
)",
                      vae ? R"(
def elbo(self, x: Tensor, num_draws: int, seed: int) -> Tensor:
    assert num_draws >= 1, "num_draws must be >= 1"
    return self._data_scores(x, 0, num_draws, seed)

def iwae(self, x: Tensor, k: int, seed: int) -> Tensor:
    assert k >= 1, "k must be >= 1"
    return self._data_scores(x, 1, k, seed)
)"
                          : "",
                      R"(

def sample(self, n: int, seed: int) -> Tensor:
    assert n >= 0, "n must be >= 0"
    torch.manual_seed(seed)
)",
                      sample, R"(
def info(self) -> Dict[str, str]:
    return {"family": self.family, "kind": self.kind, "dim": str(self.dim),
            "num_categories": str(self.num_categories), "score_kind": self.score_kind}
)");
}

}  // namespace

absl::StatusOr<std::string> ExportTorchScript(const Model& model) {
  ASSIGN_OR_RETURN(const v1::ModelSpec spec, ResolveModelSpec(model.spec(), model.shape()));
  const DataShape& shape = model.shape();
  const FamilyInfo* info = FindFamily(spec.family());
  if (info == nullptr) return absl::InternalError("export: unknown family");
  try {
    DensityNet& net = NetOf(model);
    DensityNet* inner = &net;
    std::string prefix;
    if (auto* pre = dynamic_cast<PreprocessedNetImpl*>(&net)) {
      inner = &pre->inner();
      prefix = "inner_";
    }
    absl::StatusOr<FamilySource> source;
    switch (spec.family()) {
      case v1::MODEL_FAMILY_BERNOULLI:
        source = BernoulliSource(prefix, shape.dim);
        break;
      case v1::MODEL_FAMILY_CATEGORICAL:
        source = CategoricalSource(prefix, shape.dim);
        break;
      case v1::MODEL_FAMILY_GAUSSIAN:
        source = GaussianSource(prefix, spec.gaussian().min_variance());
        break;
      case v1::MODEL_FAMILY_GAUSSIAN_MIXTURE:
        source = MixtureSource(prefix, shape.dim,
                               spec.gaussian_mixture().covariance() == v1::COVARIANCE_TYPE_FULL,
                               spec.gaussian_mixture().min_variance());
        break;
      case v1::MODEL_FAMILY_FVSBN:
        source = FvsbnSource(prefix, dynamic_cast<FvsbnImpl&>(*inner));
        break;
      case v1::MODEL_FAMILY_NADE:
        source = NadeSource(prefix, dynamic_cast<NadeImpl&>(*inner));
        break;
      case v1::MODEL_FAMILY_MADE:
        source = MadeSource(prefix, dynamic_cast<MadeImpl&>(*inner), spec.made(), shape);
        break;
      case v1::MODEL_FAMILY_VAE:
        source = VaeSource(prefix, spec.vae(), shape);
        break;
      case v1::MODEL_FAMILY_MAF:
      case v1::MODEL_FAMILY_REALNVP:
        source = export_internal::FlowSource(prefix, dynamic_cast<FlowNet&>(*inner), shape.dim);
        break;
      default:
        return absl::UnimplementedError(
            absl::StrCat("TorchScript export of ", info->name, " models is not built yet"));
    }
    RETURN_IF_ERROR(source.status());

    torch::NoGradGuard no_grad;
    torch::jit::Module module("logp_model");
    for (const auto& t : net.named_parameters()) {
      module.register_buffer(absl::StrReplaceAll(t.key(), {{".", "_"}}),
                             t.value().detach().clone());
    }
    for (const auto& t : net.named_buffers()) {
      module.register_buffer(absl::StrReplaceAll(t.key(), {{".", "_"}}),
                             t.value().detach().clone());
    }
    for (const auto& [name, t] : source->buffers) module.register_buffer(name, t);
    module.register_attribute("family", c10::StringType::get(), info->name);
    module.register_attribute("kind", c10::StringType::get(), KindName(shape.kind));
    module.register_attribute("dim", c10::IntType::get(), shape.dim);
    module.register_attribute("num_categories", c10::IntType::get(),
                              static_cast<int64_t>(shape.num_categories));
    std::string score_kind = v1::ScoreKind_Name(model.score_kind());
    module.register_attribute("score_kind", c10::StringType::get(), score_kind);
    const bool vae = spec.family() == v1::MODEL_FAMILY_VAE;
    std::string methods = source->methods;
    std::string default_call = "0, 0, 0";
    if (vae) {
      // As VaeImpl::Score with its defaults: the ELBO from kElboSamples draws, or IWAE-k.
      const int k = spec.vae().importance_samples();
      default_call =
          k > 0 ? absl::StrCat("1, ", k, ", 0") : absl::StrCat("0, ", VaeImpl::kElboSamples, ", 0");
    } else {
      absl::StrAppend(&methods, R"(
def _inner_scores(self, x: Tensor, mode: int, draws: int, seed: int) -> Tensor:
    return self._inner_log_prob(x)
)");
    }
    module.define(methods + OuterSource(spec, shape, default_call, vae));
    std::ostringstream out;
    module.save(out);
    return out.str();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("TorchScript export: ", e.what()));
  }
}

}  // namespace logp
