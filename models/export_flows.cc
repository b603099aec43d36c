// TorchScript export of the normalising flows (MAF, RealNVP): each step of the FlowNet becomes
// a pair of TorchScript methods _<step>_forward (x -> (y, log|det|)) and _<step>_inverse,
// written operation for operation as models/families/flows.cc computes them in eval mode, so
// that log_prob equals Model::Score to rounding. Batch norm is the eval-mode affine map with its
// running statistics; MAF's inverse sets one variable at a time in its layer's order; a
// coupling's inverse undoes its affine map from the passed-through half.
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "models/export_internal.h"

namespace logp {
namespace export_internal {
namespace {

std::string IntListOf(const std::vector<int64_t>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) absl::StrAppend(&out, i ? ", " : "", v[i]);
  return out + "]";
}

// An MLP over `h` whose layers are self.<p><name><l>_{weight,bias} (l < hidden) then
// self.<p><out>_{weight,bias}, relu between layers; masks[l], where given, the buffer
// self.<p><masks[l]> multiplying layer l's weight.
std::string MlpBody(const std::string& p, const std::string& name, int64_t hidden,
                    const std::string& out, const std::vector<std::string>& masks) {
  std::string body;
  auto weight = [&](const std::string& layer, size_t l) {
    std::string w = absl::StrCat("self.", p, layer, "_weight");
    if (l < masks.size()) absl::StrAppend(&w, " * self.", p, masks[l]);
    return w;
  };
  for (int64_t l = 0; l < hidden; ++l) {
    const std::string layer = absl::StrCat(name, l);
    absl::StrAppend(&body, "    h = torch.relu(torch.linear(h, ", weight(layer, l), ", self.", p,
                    layer, "_bias))\n");
  }
  absl::StrAppend(&body, "    h = torch.linear(h, ", weight(out, hidden), ", self.", p, out,
                  "_bias)\n");
  return body;
}

// MadeGaussianImpl: (mu, alpha) from the masked MLP, u = (x - mu) exp(-alpha).
std::string MadeStep(const std::string& s, const std::string& p, const MadeGaussianImpl& made,
                     int64_t dim) {
  const int64_t hidden = made.num_hidden_layers();
  std::vector<std::string> masks;
  for (int64_t l = 0; l < hidden; ++l) masks.push_back(absl::StrCat("mask", l));
  masks.push_back("mask_out");
  return absl::StrReplaceAll(absl::StrCat(R"(
def _S_cond(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    h = x
)",
                                          MlpBody(p, "hidden", hidden, "output", masks),
                                          R"(    return h[:, 0:DIM], h[:, DIM:DIM2]

def _S_forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    mu, alpha = self._S_cond(x)
    return (x - mu) * torch.exp(-alpha), -alpha.sum(1)

def _S_inverse(self, u: Tensor) -> Tensor:
    x = torch.zeros_like(u)
    order = ORDER
    for d in order:
        mu, alpha = self._S_cond(x)
        x[:, d] = u[:, d] * torch.exp(alpha[:, d]) + mu[:, d]
    return x
)"),
                             {{"_S_", absl::StrCat("_", s, "_")},
                              {"DIM2", absl::StrCat(2 * dim)},
                              {"DIM", absl::StrCat(dim)},
                              {"ORDER", IntListOf(made.order())}});
}

// AffineCouplingImpl: s = scale tanh(net_s(b x)) (1 - b), t = net_t(b x) (1 - b),
// y = x exp(s) + t.
std::string CouplingStep(const std::string& s, const std::string& p,
                         const AffineCouplingImpl& coupling) {
  const int64_t hidden = coupling.num_hidden_layers();
  return absl::StrReplaceAll(
      absl::StrCat(R"(
def _S_scale_net(self, h: Tensor) -> Tensor:
)",
                   MlpBody(p, "scale_net", hidden, "scale_net_out", {}), R"(    return h

def _S_shift_net(self, h: Tensor) -> Tensor:
)",
                   MlpBody(p, "shift_net", hidden, "shift_net_out", {}), R"(    return h

def _S_scale_shift(self, x_cond: Tensor) -> Tuple[Tensor, Tensor]:
    s = self.Pscale * torch.tanh(self._S_scale_net(x_cond)) * (1 - self.Pmask)
    t = self._S_shift_net(x_cond) * (1 - self.Pmask)
    return s, t

def _S_forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    s, t = self._S_scale_shift(x * self.Pmask)
    return x * torch.exp(s) + t, s.sum(1)

def _S_inverse(self, y: Tensor) -> Tensor:
    s, t = self._S_scale_shift(y * self.Pmask)
    return (y - t) * torch.exp(-s)
)"),
      {{"_S_", absl::StrCat("_", s, "_")}, {"Pscale", p + "scale"}, {"Pmask", p + "mask"}});
}

// FlowBatchNormImpl in eval mode: the running statistics.
std::string NormStep(const std::string& s, const std::string& p) {
  return absl::StrReplaceAll(R"(
def _S_forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    y = (x - self.Prunning_mean) * torch.rsqrt(self.Prunning_var + EPS) * torch.exp(self.Plog_gamma) + self.Pbeta
    log_det = (self.Plog_gamma - 0.5 * torch.log(self.Prunning_var + EPS)).sum()
    return y, log_det.expand([x.size(0)])

def _S_inverse(self, y: Tensor) -> Tensor:
    return (y - self.Pbeta) * torch.exp(-self.Plog_gamma) * torch.sqrt(self.Prunning_var + EPS) + self.Prunning_mean
)",
                             {{"_S_", absl::StrCat("_", s, "_")},
                              {"Prunning_mean", p + "running_mean"},
                              {"Prunning_var", p + "running_var"},
                              {"Plog_gamma", p + "log_gamma"},
                              {"Pbeta", p + "beta"},
                              {"EPS", Lit(FlowBatchNormImpl::kEps)}});
}

}  // namespace

absl::StatusOr<FamilySource> FlowSource(const std::string& prefix, const FlowNet& net,
                                        int64_t dim) {
  FamilySource source;
  std::string forward, inverse;
  for (int64_t i = 0; i < net.num_steps(); ++i) {
    const std::string& s = net.step_name(i);
    const std::string p = absl::StrCat(prefix, s, "_");
    BijectionImpl& step = net.step(i);
    if (auto* made = dynamic_cast<MadeGaussianImpl*>(&step)) {
      absl::StrAppend(&source.methods, MadeStep(s, p, *made, dim));
    } else if (auto* coupling = dynamic_cast<AffineCouplingImpl*>(&step)) {
      absl::StrAppend(&source.methods, CouplingStep(s, p, *coupling));
    } else if (dynamic_cast<FlowBatchNormImpl*>(&step) != nullptr) {
      absl::StrAppend(&source.methods, NormStep(s, p));
    } else {
      return absl::InternalError(absl::StrCat("export: flow step ", s, " of an unknown kind"));
    }
    absl::StrAppend(&forward, "    h, ld = self._", s, "_forward(h)\n    log_det = log_det + ld\n");
  }
  for (int64_t i = net.num_steps() - 1; i >= 0; --i) {
    absl::StrAppend(&inverse, "    h = self._", net.step_name(i), "_inverse(h)\n");
  }
  // As FlowNet::LogProb: the base density summed in double.
  absl::StrAppend(&source.methods, R"(
def _inner_log_prob(self, x: Tensor) -> Tensor:
    h = x
    log_det = torch.zeros([x.size(0)])
)",
                  forward, R"(    y = h.double()
    return (-0.5 * y.pow(2) - )",
                  Lit(0.5 * std::log(2.0 * M_PI)), R"().sum(1) + log_det.double()

def _inner_sample(self, n: int) -> Tensor:
    h = torch.randn([n, )",
                  dim, "])\n", inverse, "    return h\n");
  return source;
}

}  // namespace export_internal
}  // namespace logp
