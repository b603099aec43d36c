#include "models/families/nade.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "models/families/ar_sampling.h"
#include "models/families/families.h"
#include "models/families/nade_kernels.h"
#include "models/kernels.h"

namespace logp {
namespace F = torch::nn::functional;

NadeImpl::NadeImpl(std::vector<int64_t> order, int64_t hidden_units, double dropout)
    : order_(std::move(order)), hidden_units_(hidden_units), dropout_(dropout) {
  const int64_t dim = static_cast<int64_t>(order_.size());
  std::vector<int64_t> position(dim);
  for (int64_t i = 0; i < dim; ++i) position[order_[i]] = i;
  order_index_ = torch::tensor(order_, torch::TensorOptions().dtype(torch::kLong));
  inverse_index_ = torch::tensor(position, torch::TensorOptions().dtype(torch::kLong));
  const double in_bound = 1.0 / std::sqrt(static_cast<double>(dim));
  const double out_bound = 1.0 / std::sqrt(static_cast<double>(hidden_units));
  w_ = register_parameter("W", (torch::rand({hidden_units, dim}) * 2 - 1) * in_bound);
  c_ = register_parameter("c", torch::zeros({hidden_units}));
  v_ = register_parameter("V", (torch::rand({dim, hidden_units}) * 2 - 1) * out_bound);
  b_ = register_parameter("b", torch::zeros({dim}));
}

namespace {

inline float Sigmoid(float a) { return 1.f / (1.f + std::exp(-a)); }

// pre[b, d] = vo_d . sigmoid(c + sum_{j<d} wo_j xo[b, j]) for ordered inputs, computed record by
// record with the running pre-activation a (O(H) memory per record instead of the B x D x H of
// the cumulative-sum form), and its gradient with respect to wo, c and vo by the same recurrence
// (none with respect to the inputs, which are data). float32, contiguous inputs.
class NadeRecurrence : public torch::autograd::Function<NadeRecurrence> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& xo,
                               const torch::Tensor& wo, const torch::Tensor& c,
                               const torch::Tensor& vo) {
    auto x = xo.contiguous(), w = wo.contiguous(), cc = c.contiguous(), v = vo.contiguous();
    ctx->save_for_backward({x, w, cc, v});
    const int64_t batch = x.size(0), dim = x.size(1), hidden = cc.size(0);
    auto out = torch::empty({batch, dim}, x.options());
    const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>(), *cp = cc.data_ptr<float>(),
                *vp = v.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> a(hidden);
      for (int64_t b = b0; b < b1; ++b) {
        std::copy(cp, cp + hidden, a.begin());
        for (int64_t d = 0; d < dim; ++d) {
          const float* vd = vp + d * hidden;
          float acc = 0;
          for (int64_t h = 0; h < hidden; ++h) acc += vd[h] * Sigmoid(a[h]);
          op[b * dim + d] = acc;
          const float xv = xp[b * dim + d];
          if (xv != 0.f) {
            const float* wd = wp + d * hidden;
            for (int64_t h = 0; h < hidden; ++h) a[h] += xv * wd[h];
          }
        }
      }
    });
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &cc = saved[2], &v = saved[3];
    const auto g = grads[0].contiguous();
    const int64_t batch = x.size(0), dim = x.size(1), hidden = cc.size(0);
    auto dw = torch::zeros_like(w), dc = torch::zeros_like(cc), dv = torch::zeros_like(v);
    const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>(), *cp = cc.data_ptr<float>(),
                *vp = v.data_ptr<float>(), *gp = g.data_ptr<float>();
    std::mutex mu;
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> a(hidden), da(dim * hidden), suffix(hidden);
      std::vector<float> dw_l(dim * hidden, 0.f), dv_l(dim * hidden, 0.f), dc_l(hidden, 0.f);
      for (int64_t b = b0; b < b1; ++b) {
        std::copy(cp, cp + hidden, a.begin());
        for (int64_t d = 0; d < dim; ++d) {
          const float gd = gp[b * dim + d];
          const float* vd = vp + d * hidden;
          float* dvd = dv_l.data() + d * hidden;
          float* dad = da.data() + d * hidden;
          for (int64_t h = 0; h < hidden; ++h) {
            const float s = Sigmoid(a[h]);
            dvd[h] += gd * s;
            dad[h] = gd * vd[h] * s * (1.f - s);
          }
          const float xv = xp[b * dim + d];
          if (xv != 0.f) {
            const float* wd = wp + d * hidden;
            for (int64_t h = 0; h < hidden; ++h) a[h] += xv * wd[h];
          }
        }
        // wo_d reaches the pre-activations of every later position: its gradient is x_d times
        // the sum of their gradients.
        std::fill(suffix.begin(), suffix.end(), 0.f);
        for (int64_t d = dim - 1; d >= 0; --d) {
          const float xv = xp[b * dim + d];
          if (xv != 0.f) {
            float* dwd = dw_l.data() + d * hidden;
            for (int64_t h = 0; h < hidden; ++h) dwd[h] += xv * suffix[h];
          }
          const float* dad = da.data() + d * hidden;
          for (int64_t h = 0; h < hidden; ++h) suffix[h] += dad[h];
        }
        for (int64_t h = 0; h < hidden; ++h) dc_l[h] += suffix[h];
      }
      std::lock_guard<std::mutex> lock(mu);
      float *dwp = dw.data_ptr<float>(), *dvp = dv.data_ptr<float>(), *dcp = dc.data_ptr<float>();
      for (int64_t i = 0; i < dim * hidden; ++i) {
        dwp[i] += dw_l[i];
        dvp[i] += dv_l[i];
      }
      for (int64_t h = 0; h < hidden; ++h) dcp[h] += dc_l[h];
    });
    return {torch::Tensor(), dw, dc, dv};
  }
};

}  // namespace

bool NadeImpl::KernelsApply() const {
  return use_kernels_ && !(dropout_ > 0 && is_training()) && w_.scalar_type() == torch::kFloat;
}

torch::Tensor NadeImpl::OrderedLogits(const torch::Tensor& x) {
  const bool dropout = dropout_ > 0 && is_training();
  if (KernelsApply() && !torch::GradMode::is_enabled() && x.scalar_type() == torch::kFloat) {
    const auto xo = x.index_select(1, order_index_).contiguous();
    const auto wo = w_.index_select(1, order_index_).t().contiguous();
    const auto vo = v_.index_select(0, order_index_).contiguous();
    const auto bo = b_.index_select(0, order_index_).contiguous();
    const NadeWeights m{x.size(1),
                        hidden_units_,
                        wo.data_ptr<float>(),
                        c_.data_ptr<float>(),
                        vo.data_ptr<float>(),
                        bo.data_ptr<float>()};
    auto logits = torch::empty_like(xo);
    const int64_t dim = x.size(1);
    at::parallel_for(0, x.size(0), 8, [&](int64_t b0, int64_t b1) {
      NadeLogits(m, b1 - b0, xo.data_ptr<float>() + b0 * dim, logits.data_ptr<float>() + b0 * dim);
    });
    return logits;
  }
  if (use_recurrence_ && !dropout && !x.requires_grad() && x.scalar_type() == torch::kFloat &&
      w_.scalar_type() == torch::kFloat) {
    auto xo = x.index_select(1, order_index_);
    auto wo = w_.index_select(1, order_index_).t();
    auto vo = v_.index_select(0, order_index_);
    return NadeRecurrence::apply(xo, wo, c_, vo) + b_.index_select(0, order_index_);
  }
  return OrderedLogitsByCumsum(x);
}

torch::Tensor NadeImpl::OrderedLogitsByCumsum(const torch::Tensor& x) {
  auto xo = x.index_select(1, order_index_);         // [B, D]
  auto wo = w_.index_select(1, order_index_).t();    // [D, H]
  auto contrib = xo.unsqueeze(2) * wo.unsqueeze(0);  // [B, D, H]
  // Exclusive cumulative sum: position i sees the inputs at positions < i.
  auto a = torch::cumsum(contrib, 1) - contrib + c_;
  auto h = torch::sigmoid(a);
  h = Dropout(h, dropout_, is_training());
  auto vo = v_.index_select(0, order_index_);  // [D, H]
  return (h * vo.unsqueeze(0)).sum(2) + b_.index_select(0, order_index_);
}

torch::Tensor NadeImpl::LossAndGradients(const torch::Tensor& x_in) {
  if (!is_training() || !KernelsApply()) return torch::Tensor();
  torch::NoGradGuard no_grad;
  const int64_t batch = x_in.size(0), dim = x_in.size(1), hid = hidden_units_;
  const auto xo = x_in.to(torch::kFloat).index_select(1, order_index_).contiguous();
  const auto wo = w_.index_select(1, order_index_).t().contiguous();
  const auto vo = v_.index_select(0, order_index_).contiguous();
  const auto bo = b_.index_select(0, order_index_).contiguous();
  const NadeWeights m{dim,
                      hid,
                      wo.data_ptr<float>(),
                      c_.data_ptr<float>(),
                      vo.data_ptr<float>(),
                      bo.data_ptr<float>()};
  auto logits = torch::empty_like(xo);
  // One set of gradients per thread, summed after: [threads, D H + H + D H + D].
  const int64_t threads = at::get_num_threads(), size = 2 * dim * hid + hid + dim;
  auto grads = torch::zeros({threads, size});
  const float scale = 1.0f / static_cast<float>(batch);
  at::parallel_for(0, batch, 8, [&](int64_t b0, int64_t b1) {
    float* g = grads.data_ptr<float>() + at::get_thread_num() * size;
    NadeLogitsAndGradients(m, b1 - b0, xo.data_ptr<float>() + b0 * dim, scale,
                           logits.data_ptr<float>() + b0 * dim, g, g + dim * hid,
                           g + dim * hid + hid, g + 2 * dim * hid + hid);
  });
  const auto total = threads == 1 ? grads[0] : grads.sum(0);
  const auto dwo = total.slice(0, 0, dim * hid).view({dim, hid});
  const auto dvo = total.slice(0, dim * hid + hid, 2 * dim * hid + hid).view({dim, hid});
  // Back from position order to variable order.
  w_.mutable_grad() = dwo.index_select(0, inverse_index_).t().contiguous();
  c_.mutable_grad() = total.slice(0, dim * hid, dim * hid + hid).clone();
  v_.mutable_grad() = dvo.index_select(0, inverse_index_);
  b_.mutable_grad() = total.slice(0, 2 * dim * hid + hid).index_select(0, inverse_index_);
  auto scratch = torch::empty_like(logits);
  const double nll = BernoulliNllAndGrad(logits.numel(), logits.data_ptr<float>(),
                                         xo.data_ptr<float>(), 1.0f, scratch.data_ptr<float>());
  return torch::scalar_tensor(nll / static_cast<double>(batch), torch::kDouble);
}

torch::Tensor NadeImpl::Logits(const torch::Tensor& x) {
  const int64_t batch = x.size(0);
  const int64_t per_row = std::max<int64_t>(1, x.size(1) * hidden_units_);
  const int64_t chunk = std::max<int64_t>(1, kMaxChunkElements / per_row);
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < batch; s += chunk) {
    parts.push_back(OrderedLogits(x.slice(0, s, std::min(batch, s + chunk))));
  }
  auto ordered = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
  return ordered.index_select(1, inverse_index_);
}

torch::Tensor NadeImpl::LogProb(const torch::Tensor& x) {
  return BernoulliLogLikelihood(Logits(x), x);
}

torch::Tensor NadeImpl::PerDimensionLogProb(const torch::Tensor& x) {
  auto l = Logits(x).to(torch::kDouble);
  return x.to(torch::kDouble) * l - torch::nn::functional::softplus(l);
}

torch::Tensor NadeImpl::Sample(int64_t n, at::Generator& gen) {
  return SampleIncrementally(NadeSamplingWeightsOf(*this), n, gen);
}

torch::Tensor NadeImpl::ReferenceSample(int64_t n, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const int64_t dim = static_cast<int64_t>(order_.size());
  auto u = torch::rand({n, dim}, gen);
  auto x = torch::zeros({n, dim});
  auto a = c_.unsqueeze(0).expand({n, hidden_units_}).clone();
  for (int64_t i = 0; i < dim; ++i) {
    if (i % 16 == 0) PollStop();
    const int64_t d = order_[i];
    auto logit = torch::mv(torch::sigmoid(a), v_[d]) + b_[d];
    auto xd = (u.select(1, d) < torch::sigmoid(logit)).to(torch::kFloat);
    x.select(1, d).copy_(xd);
    a += xd.unsqueeze(1) * w_.select(1, d).unsqueeze(0);
  }
  return x;
}

FamilyInfo NadeFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_NADE;
  f.name = "nade";
  f.kinds = {v1::DATA_KIND_BINARY};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* m = spec->mutable_nade();
    if (m->hidden_units() == 0) m->set_hidden_units(500);
    if (m->order() == v1::VARIABLE_ORDER_UNSPECIFIED) m->set_order(v1::VARIABLE_ORDER_NATURAL);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) -> absl::Status {
    const auto& m = spec.nade();
    auto st = CheckRange("model.nade.hidden_units", m.hidden_units(), 1, 8192);
    if (st.ok() && !v1::VariableOrder_IsValid(m.order())) {
      st = absl::InvalidArgumentError("model.nade.order is not a known VariableOrder");
    }
    return st;
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.nade();
    return std::make_shared<NadeImpl>(VariableOrder(m.order(), m.order_seed(), shape.dim),
                                      m.hidden_units(), spec.regularization().dropout());
  };
  f.footprint = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const int64_t h = spec.nade().hidden_units(), d = shape.dim;
    NetFootprint n;
    n.parameters = 2 * h * d + h + d;
    // The recurrence's backward keeps D x H buffers per thread (da, dW, dV: 1.5 parameter sets).
    n.per_thread_parameter_copies = 2;
    n.step_bytes_per_record = 4 * (6 * d + h);
    n.eval_bytes_per_record = 4 * (3 * d + h);
    return n;
  };
  return f;
}

}  // namespace logp
