// Marginals and conditionals: the dispatch over the family's exact forms and estimators.
#include "models/conditional.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "models/density_net.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

// Rows per forward pass.
constexpr int64_t kPassRows = 16384;

std::string FamilyName(const Model& model) {
  const FamilyInfo* f = FindFamily(model.spec().family());
  return f != nullptr ? f->name : "this family";
}

absl::Status CheckWork(int64_t rows, int64_t per_row, const char* what, int64_t limit) {
  if (per_row > 0 && rows > limit / per_row) {
    return absl::ResourceExhaustedError(absl::StrCat("records x ", what, " = ", rows, " x ",
                                                     per_row, " exceeds the limit of ", limit,
                                                     " forward-pass rows per call"));
  }
  return absl::OkStatus();
}

// What the model offers for an observed set, probed on one record.
struct Plan {
  enum Kind {
    kAll,
    kClosedForm,
    kIndependent,
    kPrefix,
    kEnumerate,
    kLatent,
    kAncestral,
    kNone
  } kind = kNone;
  int64_t completions = 0;
  std::vector<int64_t> order;  // kPrefix, kAncestral: the model's FactorOrder
  std::string why_not;         // kNone: the message
};

// K^m, or -1 when over kMaxEnumeratedCompletions.
int64_t Completions(const DataShape& shape, int64_t missing) {
  const int64_t k = shape.kind == v1::DATA_KIND_BINARY ? 2 : shape.num_categories;
  int64_t c = 1;
  for (int64_t i = 0; i < missing; ++i) {
    c *= k;
    if (c > kMaxEnumeratedCompletions) return -1;
  }
  return c;
}

Plan MakePlan(const Model& model, DensityNet& net, const torch::Tensor& probe,
              const torch::Tensor& mask, const std::vector<int64_t>& observed, bool impute) {
  Plan p;
  const DataShape& shape = model.shape();
  const int64_t missing = shape.dim - static_cast<int64_t>(observed.size());
  if (missing == 0) {
    p.kind = Plan::kAll;
    return p;
  }
  if (net.MarginalLogProb(probe, mask).defined()) {
    p.kind = Plan::kClosedForm;
    return p;
  }
  const bool per_dim = net.PerDimensionLogProb(probe).defined();
  const std::vector<int64_t> order = net.FactorOrder();
  if (per_dim && order.empty()) {
    p.kind = Plan::kIndependent;
    return p;
  }
  const bool discrete = shape.kind != v1::DATA_KIND_CONTINUOUS;
  p.order = order;
  // The prefix: an exact sum for Marginal; for Impute, exact ancestral continuation (discrete
  // conditionals only: they are sampled by evaluating every value).
  if (per_dim && (!impute || discrete)) {
    std::set<int64_t> prefix(order.begin(), order.begin() + observed.size());
    if (prefix == std::set<int64_t>(observed.begin(), observed.end())) {
      p.kind = Plan::kPrefix;
      return p;
    }
  }
  const int64_t c = discrete ? Completions(shape, missing) : -1;
  if (discrete && model.score_kind() == v1::SCORE_KIND_EXACT && c > 0) {
    p.kind = Plan::kEnumerate;
    p.completions = c;
    return p;
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  if (net.LatentLogWeights(probe, mask, 1, gen, nullptr).defined()) {
    p.kind = Plan::kLatent;
    return p;
  }
  if (per_dim && discrete) {
    p.kind = Plan::kAncestral;
    return p;
  }
  p.why_not = absl::StrCat(
      FamilyName(model), " has no ",
      impute ? "exact or resampled conditional" : "exact or estimated marginal",
      " for this observed set: no closed form",
      per_dim ? ", the observed set is not a prefix of its autoregressive order" : "",
      discrete ? absl::StrCat(", the ", missing, " missing dimensions have more than ",
                              kMaxEnumeratedCompletions, " completions")
               : ", continuous values cannot be enumerated",
      ", and no latent variables to sample",
      model.spec().has_preprocessing() ? " (behind preprocessing the closed forms do not apply)"
                                       : "");
  return p;
}

// Every completion of the missing dimensions, [C, m] float: completion c has value
// (c / K^j) mod K in missing dimension j.
torch::Tensor AllCompletions(int64_t c, int64_t m, int64_t k) {
  auto codes = torch::arange(c, torch::kLong);
  std::vector<torch::Tensor> cols;
  int64_t base = 1;
  for (int64_t j = 0; j < m; ++j, base *= k) cols.push_back(torch::floor_divide(codes, base) % k);
  return torch::stack(cols, 1).to(torch::kFloat);
}

// log p(x_o, x_m = completion c) for rows x [r, D] and completions [C, m]: [r, C] double.
torch::Tensor EnumeratedLogJoint(DensityNet& net, const torch::Tensor& x,
                                 const torch::Tensor& mis_idx, const torch::Tensor& comps) {
  const int64_t r = x.size(0), c = comps.size(0), d = x.size(1);
  auto full = x.unsqueeze(1).repeat({1, c, 1});  // [r, C, D]
  full.index_copy_(2, mis_idx, comps.unsqueeze(0).expand({r, c, comps.size(1)}).contiguous());
  full = full.view({r * c, d});
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < r * c; b += kPassRows) {
    PollStop();
    auto s = net.Score(full.slice(0, b, std::min(r * c, b + kPassRows)), ScoreOptions{});
    parts.push_back(s.log_prob.to(torch::kDouble));
  }
  return torch::cat(parts).view({r, c});
}

// Ancestral draws with the observed dimensions clamped: rows x [R, D] (discrete values as floats)
// get their missing dimensions drawn one at a time in `order` from the model's conditionals
// p(x_d | x_<d) (each evaluated at all K values), in place; the dimensions after position
// `last` in the order are left as they are. Returns the log importance weights
// sum_{d observed} log p(x_d | x_<d) [R] double: the proposal is the product of the missing
// dimensions' conditionals, so w = p(x_o, x_m) / q(x_m), and w is the same for every draw (the
// draws exact, w = p(x_o)) when the observed set is a prefix of the order.
torch::Tensor AncestralDraws(DensityNet& net, torch::Tensor& x, const std::vector<int64_t>& order,
                             const torch::Tensor& mask, const torch::Tensor& obs_idx, int64_t k,
                             size_t last, at::Generator& gen) {
  auto observed = mask.accessor<bool, 1>();
  for (size_t pos = 0; pos <= last && pos < order.size(); ++pos) {
    const int64_t d = order[pos];
    if (observed[d]) continue;
    PollStop();
    std::vector<torch::Tensor> terms;
    for (int64_t c = 0; c < k; ++c) {
      x.select(1, d).fill_(static_cast<double>(c));
      terms.push_back(net.PerDimensionLogProb(x).select(1, d).to(torch::kDouble));
    }
    auto p = torch::softmax(torch::stack(terms, 1), 1);  // renormalised against rounding
    x.select(1, d).copy_(torch::multinomial(p, 1, true, gen).squeeze(1).to(x.scalar_type()));
  }
  PollStop();
  return net.PerDimensionLogProb(x).to(torch::kDouble).index_select(1, obs_idx).sum(1);
}

// The last position in `order` of an observed dimension.
size_t LastObserved(const std::vector<int64_t>& order, const torch::Tensor& mask) {
  auto observed = mask.accessor<bool, 1>();
  size_t last = 0;
  for (size_t pos = 0; pos < order.size(); ++pos) {
    if (observed[order[pos]]) last = pos;
  }
  return last;
}

int64_t Categories(const DataShape& shape) {
  return shape.kind == v1::DATA_KIND_BINARY ? 2 : shape.num_categories;
}

struct Setup {
  torch::Tensor base;     // [N, D] as BorrowRows
  torch::Tensor mask;     // [D] bool
  torch::Tensor obs_idx;  // [o] long
  torch::Tensor mis_idx;  // [m] long
  torch::Tensor probe;    // [1, D] float: the first record (or zeros)
};

Setup MakeSetup(const Model& model, const RecordMatrix& records,
                const std::vector<int64_t>& observed) {
  Setup s;
  const int64_t d = model.shape().dim;
  s.base = BorrowRows(records);
  s.mask = torch::zeros({d}, torch::kBool);
  for (int64_t i : observed) s.mask[i] = true;
  s.obs_idx = torch::nonzero(s.mask).view({-1});
  s.mis_idx = torch::nonzero(torch::logical_not(s.mask)).view({-1});
  s.probe = records.rows > 0 ? s.base.slice(0, 0, 1).to(torch::kFloat) : torch::zeros({1, d});
  return s;
}

absl::Status ToStatus(const std::exception& e, const char* what) {
  if (dynamic_cast<const CallStopped*>(&e) != nullptr) {
    return absl::CancelledError(absl::StrCat(what, " stopped"));
  }
  return absl::InternalError(absl::StrCat(what, ": ", e.what()));
}

absl::Status CheckImportanceSamples(int k) {
  if (k < 2 || k > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance_samples must be in [2, 10000], got ", k));
  }
  return absl::OkStatus();
}

// Appends the [r] double values of t to *out.
void Append(const torch::Tensor& t, std::vector<double>* out) {
  auto c = t.to(torch::kDouble).contiguous();
  out->insert(out->end(), c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

absl::Status CheckObservedDims(const std::vector<int64_t>& dims, int64_t dim) {
  if (dims.empty()) {
    return absl::InvalidArgumentError("observed_dims must name at least one dimension");
  }
  std::set<int64_t> seen;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= dim) {
      return absl::InvalidArgumentError(absl::StrCat("observed_dims[", i, "] = ", dims[i],
                                                     " is not a dimension of the model (dim ", dim,
                                                     ")"));
    }
    if (!seen.insert(dims[i]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("observed_dims[", i, "] = ", dims[i], " is repeated"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MarginalScores> Marginal(const Model& model, const RecordMatrix& records,
                                        const std::vector<int64_t>& observed,
                                        const ConditionalOptions& options) {
  const DataShape& shape = model.shape();
  RETURN_IF_ERROR(CheckMatches(records, shape, "records"));
  RETURN_IF_ERROR(CheckObservedDims(observed, shape.dim));
  MarginalScores out;
  try {
    c10::InferenceMode guard;
    StopScope stop(&options.stop);
    DensityNet& net = NetOf(model);
    Setup s = MakeSetup(model, records, observed);
    const Plan plan = MakePlan(model, net, s.probe, s.mask, observed, /*impute=*/false);
    const int64_t n = records.rows;
    switch (plan.kind) {
      case Plan::kNone:
        return absl::FailedPreconditionError(plan.why_not);
      case Plan::kAll: {
        ScoreOptions so;
        so.importance_samples = options.importance_samples;
        so.seed = options.seed;
        so.stop = options.stop;
        ASSIGN_OR_RETURN(Scores scores, model.Score(records, so));
        out.log_prob = std::move(scores.log_prob);
        out.standard_error = std::move(scores.standard_error);
        out.kind = scores.kind;
        out.importance_samples = scores.importance_samples;
        out.method = "full likelihood";
        return out;
      }
      case Plan::kClosedForm:
      case Plan::kIndependent:
      case Plan::kPrefix: {
        out.method = plan.kind == Plan::kClosedForm    ? "closed form"
                     : plan.kind == Plan::kIndependent ? "independent dimensions"
                                                       : "autoregressive prefix";
        for (int64_t b = 0; b < n; b += kEvalBatchRows) {
          PollStop();
          auto x = s.base.slice(0, b, std::min(n, b + kEvalBatchRows)).to(torch::kFloat);
          torch::Tensor lp;
          if (plan.kind == Plan::kClosedForm) {
            lp = net.MarginalLogProb(x, s.mask);
          } else {
            lp = net.PerDimensionLogProb(x).to(torch::kDouble).index_select(1, s.obs_idx).sum(1);
          }
          Append(lp, &out.log_prob);
        }
        return out;
      }
      case Plan::kEnumerate: {
        const int64_t c = plan.completions;
        RETURN_IF_ERROR(CheckWork(n, c, "completions", options.max_forward_rows));
        auto comps = AllCompletions(c, s.mis_idx.numel(),
                                    shape.kind == v1::DATA_KIND_BINARY ? 2 : shape.num_categories);
        const int64_t rb = std::max<int64_t>(1, kPassRows / c);
        for (int64_t b = 0; b < n; b += rb) {
          auto x = s.base.slice(0, b, std::min(n, b + rb)).to(torch::kFloat);
          Append(torch::logsumexp(EnumeratedLogJoint(net, x, s.mis_idx, comps), 1), &out.log_prob);
        }
        out.method = absl::StrCat("enumeration (", c, " completions)");
        return out;
      }
      case Plan::kAncestral: {
        const int k = options.importance_samples;
        RETURN_IF_ERROR(CheckImportanceSamples(k));
        const size_t last = LastObserved(plan.order, s.mask);
        const int64_t passes = Categories(shape) * static_cast<int64_t>(last + 1) + 1;
        RETURN_IF_ERROR(CheckWork(n, k * passes, "importance_samples x conditional passes",
                                  options.max_forward_rows));
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
        const int64_t rb = std::max<int64_t>(1, kPassRows / k);
        for (int64_t b = 0; b < n; b += rb) {
          auto x = s.base.slice(0, b, std::min(n, b + rb)).to(torch::kFloat);
          const int64_t r = x.size(0);
          auto xs = x.repeat_interleave(k, 0);  // [r k, D]
          auto log_w =
              AncestralDraws(net, xs, plan.order, s.mask, s.obs_idx, Categories(shape), last, gen)
                  .view({r, k})
                  .t();  // [k, r]
          auto est = LogMeanExp(log_w, 0);
          auto se = torch::exp(log_w - est).std(0, /*unbiased=*/true) / std::sqrt(double(k));
          Append(est, &out.log_prob);
          Append(se, &out.standard_error);
        }
        out.kind = v1::SCORE_KIND_ESTIMATE;
        out.importance_samples = k;
        out.method = absl::StrCat("importance sampling (k=", k, ", ancestral proposal)");
        return out;
      }
      case Plan::kLatent: {
        const int k = options.importance_samples;
        RETURN_IF_ERROR(CheckImportanceSamples(k));
        RETURN_IF_ERROR(CheckWork(n, k, "importance_samples", options.max_forward_rows));
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
        const int64_t rb = std::max<int64_t>(1, (int64_t{1} << 16) / k);
        for (int64_t b = 0; b < n; b += rb) {
          PollStop();
          auto x = s.base.slice(0, b, std::min(n, b + rb)).to(torch::kFloat);
          auto log_w = net.LatentLogWeights(x, s.mask, k, gen, nullptr);  // [k, r]
          auto est = LogMeanExp(log_w, 0);
          // Delta method, as the VAE's Score: Var[log mean w] ~ Var[w] / (k E[w]^2).
          auto se = torch::exp(log_w - est).std(0, /*unbiased=*/true) / std::sqrt(double(k));
          Append(est, &out.log_prob);
          Append(se, &out.standard_error);
        }
        out.kind = v1::SCORE_KIND_ESTIMATE;
        out.importance_samples = k;
        out.method = absl::StrCat("importance sampling (k=", k, ")");
        return out;
      }
    }
    return absl::InternalError("unhandled marginal plan");
  } catch (const std::exception& e) {
    return ToStatus(e, "marginal");
  }
}

absl::StatusOr<Imputations> Impute(const Model& model, const RecordMatrix& records,
                                   const std::vector<int64_t>& observed, int64_t num_samples,
                                   const ConditionalOptions& options) {
  const DataShape& shape = model.shape();
  RETURN_IF_ERROR(CheckMatches(records, shape, "records"));
  RETURN_IF_ERROR(CheckObservedDims(observed, shape.dim));
  if (num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be at least 1, got ", num_samples));
  }
  const int64_t n = records.rows, d = shape.dim;
  RETURN_IF_ERROR(CheckWork(n, num_samples, "num_samples", options.max_forward_rows));
  Imputations out;
  try {
    c10::InferenceMode guard;
    StopScope stop(&options.stop);
    DensityNet& net = NetOf(model);
    Setup s = MakeSetup(model, records, observed);
    const Plan plan = MakePlan(model, net, s.probe, s.mask, observed, /*impute=*/true);
    if (plan.kind == Plan::kNone) return absl::FailedPreconditionError(plan.why_not);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    std::vector<torch::Tensor> draws;  // [r, num_samples, D] per batch
    int64_t per_row = num_samples;
    if (plan.kind == Plan::kEnumerate) per_row = std::max<int64_t>(per_row, plan.completions);
    if (plan.kind == Plan::kLatent || plan.kind == Plan::kAncestral) {
      RETURN_IF_ERROR(CheckImportanceSamples(options.importance_samples));
      per_row = std::max<int64_t>(per_row, options.importance_samples);
    }
    // Ancestral draws: K passes per missing dimension, and one for the weights.
    const int64_t passes = plan.kind == Plan::kPrefix || plan.kind == Plan::kAncestral
                               ? Categories(shape) * static_cast<int64_t>(s.mis_idx.numel()) + 1
                               : 1;
    RETURN_IF_ERROR(CheckWork(n, per_row * passes,
                              plan.kind == Plan::kEnumerate   ? "completions"
                              : plan.kind == Plan::kLatent    ? "importance_samples"
                              : plan.kind == Plan::kAncestral ? "importance_samples x passes"
                              : plan.kind == Plan::kPrefix    ? "num_samples x passes"
                                                              : "num_samples",
                              options.max_forward_rows));
    const int64_t rb = std::max<int64_t>(1, kPassRows / per_row);
    torch::Tensor comps;
    if (plan.kind == Plan::kEnumerate) {
      comps = AllCompletions(plan.completions, s.mis_idx.numel(),
                             shape.kind == v1::DATA_KIND_BINARY ? 2 : shape.num_categories);
    }
    const int k = options.importance_samples;
    for (int64_t b = 0; b < n; b += rb) {
      PollStop();
      auto x = s.base.slice(0, b, std::min(n, b + rb)).to(torch::kFloat);
      const int64_t r = x.size(0);
      auto keep = [&](const torch::Tensor& full) {  // [r, n, D] with x's observed values
        return torch::where(s.mask.view({1, 1, d}), x.unsqueeze(1), full.to(torch::kFloat));
      };
      switch (plan.kind) {
        case Plan::kAll:
          draws.push_back(x.unsqueeze(1).repeat({1, num_samples, 1}));
          break;
        case Plan::kClosedForm: {
          draws.push_back(keep(net.ConditionalSample(x, s.mask, num_samples, gen)));
          auto mean = net.ConditionalMean(x, s.mask);
          if (mean.defined()) Append(mean.reshape({-1}), &out.conditional_mean);
          break;
        }
        case Plan::kIndependent:
          draws.push_back(keep(net.Sample(r * num_samples, gen).view({r, num_samples, d})));
          break;
        case Plan::kEnumerate: {
          auto post = torch::softmax(EnumeratedLogJoint(net, x, s.mis_idx, comps), 1);  // [r, C]
          auto pick = torch::multinomial(post, num_samples, /*replacement=*/true, gen);
          auto full = x.unsqueeze(1).repeat({1, num_samples, 1});
          full.index_copy_(
              2, s.mis_idx,
              comps.index_select(0, pick.reshape({-1})).view({r, num_samples, s.mis_idx.numel()}));
          draws.push_back(full);
          break;
        }
        case Plan::kLatent: {
          torch::Tensor z;                                           // [k, r, L]
          auto log_w = net.LatentLogWeights(x, s.mask, k, gen, &z);  // [k, r]
          auto p = torch::softmax(log_w, 0).t().contiguous();        // [r, k]
          Append(1.0 / p.pow(2).sum(1), &out.effective_sample_size);
          auto pick = torch::multinomial(p, num_samples, /*replacement=*/true, gen);  // [r, n]
          auto rows = torch::arange(r).unsqueeze(1).expand({r, num_samples});
          auto zr = z.permute({1, 0, 2}).index({rows, pick});  // [r, n, L]
          auto dec = net.DecodeSample(zr.reshape({r * num_samples, -1}), gen);
          draws.push_back(keep(dec.view({r, num_samples, d})));
          break;
        }
        case Plan::kPrefix: {  // exact: the prefix is the start of the ancestral order
          auto xs = x.repeat_interleave(num_samples, 0);
          AncestralDraws(net, xs, plan.order, s.mask, s.obs_idx, Categories(shape),
                         plan.order.size(), gen);
          draws.push_back(xs.view({r, num_samples, d}));
          break;
        }
        case Plan::kAncestral: {  // resampled: k clamped ancestral proposals per record
          auto xs = x.repeat_interleave(k, 0);  // [r k, D]
          auto log_w = AncestralDraws(net, xs, plan.order, s.mask, s.obs_idx, Categories(shape),
                                      plan.order.size(), gen);
          auto p = torch::softmax(log_w.view({r, k}), 1);  // [r, k]
          Append(1.0 / p.pow(2).sum(1), &out.effective_sample_size);
          auto pick = torch::multinomial(p, num_samples, /*replacement=*/true, gen);  // [r, n]
          auto flat = (pick + torch::arange(r).unsqueeze(1) * k).reshape({-1});
          draws.push_back(xs.index_select(0, flat).view({r, num_samples, d}));
          break;
        }
        case Plan::kNone:
          return absl::InternalError("unhandled impute plan");
      }
    }
    auto all = draws.empty() ? torch::zeros({0, d}) : torch::cat(draws, 0).view({-1, d});
    out.samples = TensorToRecords(all, shape);
    switch (plan.kind) {
      case Plan::kAll:
        out.method = "all observed";
        break;
      case Plan::kClosedForm:
        out.method = "closed form";
        break;
      case Plan::kIndependent:
        out.method = "independent dimensions";
        break;
      case Plan::kEnumerate:
        out.method = absl::StrCat("enumeration (", plan.completions, " completions)");
        break;
      case Plan::kPrefix:
        out.method = "ancestral continuation of the prefix";
        break;
      case Plan::kAncestral:
        out.exact = false;
        out.importance_samples = k;
        out.method = absl::StrCat("sampling-importance-resampling (k=", k, ", ancestral proposal)");
        break;
      default:
        out.exact = false;
        out.importance_samples = k;
        out.method = absl::StrCat("sampling-importance-resampling (k=", k, ")");
    }
    return out;
  } catch (const std::exception& e) {
    return ToStatus(e, "imputation");
  }
}

}  // namespace logp
