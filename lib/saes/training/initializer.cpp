// Dictionary initialization (spec §4): random init, transpose init, bias init and the
// decoder-norm grid search on one batch.
#include "saes/training/initializer.h"

#include <limits>

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "saes/core/logging.h"
#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::training {
namespace {

std::vector<double> linspace(double begin, double end, int n) {
  std::vector<double> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out[i] = begin + (end - begin) * i / (n - 1);
  return out;
}

/// Sets the decoder norm to v and re-applies the dependent inits, then scores l_rec (spec §4).
double score_norm(dictionaries::SparseDictionary& dict, const InitializerConfig& cfg, double v,
                  const at::Tensor& x, const at::Tensor& label, const at::Tensor& b_E0) {
  dict.set_decoder_to_fixed_norm(v, true);
  if (cfg.init_encoder_with_decoder_transpose) {
    dict.init_encoder_with_decoder_transpose(cfg.init_encoder_with_decoder_transpose_factor);
  }
  if (cfg.init_encoder_bias_with_mean_hidden_pre) {
    for (auto& p : dict.parameters()) {
      if (p.name == "b_E") p.value.copy_(b_E0);
    }
    dict.init_encoder_bias_with_mean_hidden_pre(x);
  }
  return dict.reconstruction_loss(x, label, dict.config().top_k);
}

}  // namespace

std::vector<double> coarse_norm_grid() { return linspace(0.1, 5.0, 50); }
std::vector<double> fine_norm_grid(double best) { return linspace(best - 0.09, best + 0.1, 20); }

void initialize_parameters(dictionaries::SparseDictionary& dict, const InitializerConfig& cfg,
                           at::Generator& gen) {
  dict.init_parameters(
      {cfg.encoder_uniform_bound, cfg.decoder_uniform_bound, cfg.init_log_jumprelu_threshold_value},
      gen);
  if (cfg.init_encoder_with_decoder_transpose) {
    dict.init_encoder_with_decoder_transpose(cfg.init_encoder_with_decoder_transpose_factor);
  }
}

double initialization_search(dictionaries::SparseDictionary& dict, const InitializerConfig& cfg,
                             const std::map<std::string, at::Tensor>& raw, Logger& logger) {
  const at::Tensor x = dict.prepare_input(raw);
  const at::Tensor label = dict.prepare_label(raw);
  if (cfg.bias_init_method == BiasInitMethod::kGeometricMedian) {
    dict.init_decoder_bias_with_mean(label);  // upstream: the mean, not a geometric median
  }
  double best = 0.0;
  if (cfg.grid_search_init_norm) {
    at::Tensor b_E0;
    for (auto& p : dict.parameters()) {
      if (p.name == "b_E") b_E0 = p.value.clone();
    }
    auto search = [&](const std::vector<double>& grid) {
      double best_v = grid.front(), best_loss = std::numeric_limits<double>::infinity();
      for (double v : grid) {
        const double loss = score_norm(dict, cfg, v, x, label, b_E0);
        if (loss < best_loss) best_loss = loss, best_v = v;
      }
      return best_v;
    };
    const double coarse = search(coarse_norm_grid());
    best = search(fine_norm_grid(coarse));
    logger.info("init: best decoder norm coarse {:.2f}, fine {:.3f}", coarse, best);
    dict.set_decoder_to_fixed_norm(best, true);
    for (auto& p : dict.parameters()) {
      if (p.name == "b_E") p.value.copy_(b_E0);
    }
  }
  if (cfg.init_encoder_with_decoder_transpose) {
    dict.init_encoder_with_decoder_transpose(cfg.init_encoder_with_decoder_transpose_factor);
  }
  if (cfg.init_encoder_bias_with_mean_hidden_pre) dict.init_encoder_bias_with_mean_hidden_pre(x);
  return best;
}

}  // namespace saes::training
