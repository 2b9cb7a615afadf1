// The training loop: step order of spec §5.2 for every member, checkpoints, resume, stop signals,
// and the data-parallel reductions around each member's step (gradient_sync.h).
#include "saes/training/trainer.h"

#include <cmath>
#include <set>
#include <utility>

#include <ATen/ops/scalar_tensor.h>
#include <fmt/format.h>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"
#include "saes/io/safetensors.h"
#include "saes/training/checkpoint.h"
#include "saes/training/gradient_sync.h"
#include "saes/training/metrics.h"
#include "saes/training/schedules.h"
#include "saes/training/stop_signal.h"
#include "saes/training/tensorboard.h"

namespace fs = std::filesystem;

namespace saes::training {
namespace {

constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kMetricsStateFile = "metrics_state.safetensors";

std::map<std::string, at::Tensor> read_tensors(const fs::path& path) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> out;
  for (const std::string& name : file.names()) out[name] = file.tensor(name, io::TensorLoad::kCopy);
  return out;
}

void check_member_name(const std::string& name, std::size_t n_members) {
  SAES_CHECK(!name.empty() || n_members == 1, ConfigError,
             "trainer: every dictionary needs a name when {} are trained together", n_members);
  SAES_CHECK(
      name.find('/') == std::string::npos && name != "." && name != ".." && name != "checkpoints",
      ConfigError, "trainer: dictionary name '{}' is not a plain folder name", name);
}

/// The parameter an optimizer state tensor belongs to: "W_E.exp_avg" → "W_E".
std::string parameter_of(const std::string& state_name) {
  return state_name.substr(0, state_name.rfind('.'));
}

std::int64_t valid_tokens(const TrainBatch& batch) {
  return batch.mask.defined() ? batch.mask.sum().item<std::int64_t>() : batch.n_tokens;
}

double valid_count(const at::Tensor& mask, std::int64_t n_tokens) {
  return mask.defined() ? mask.sum().item<double>() : static_cast<double>(n_tokens);
}

/// One member's step after the data-parallel reduction (the local step in one process).
struct MemberStep {
  std::map<std::string, double> losses;
  std::map<std::string, double> metrics;
  std::optional<BatchStats> stats;
  at::Tensor fired;
  double local_valid = 0;
  double global_valid = 0;
};

}  // namespace

struct MemberRun {
  TrainerMember member;
  fs::path dir;
  Optimizer optimizer;
  MetricsTracker metrics;
  std::optional<MetricsLog> log;
  std::optional<TensorBoardWriter> tensorboard;
  std::optional<LrSchedule> lr;
  std::optional<KSchedule> k;
  std::int64_t l1_warm_up = 0;
  std::string summary;

  MemberRun(TrainerMember m, const fs::path& run_dir, std::int64_t log_frequency)
      : member(std::move(m)),
        dir(member.name.empty() ? run_dir : run_dir / member.name),
        optimizer(member.config.optimizer_class, member.config.lr, member.config.betas),
        metrics(member.module->n_features(), log_frequency, member.config.dead_threshold,
                member.module->feature_layers()) {}
};

struct Trainer::Impl {
  TrainerConfig config;
  std::vector<MemberRun> members;
  BatchSource& source;
  Logger& logger;
  TrainerOptions options;
  TrainerState state;
  bool scheduled = false;
  bool resumed = false;
  std::optional<TrainBatch> first_batch;
  std::optional<GradientSync> sync;    ///< set with more than one data-parallel rank
  SquaredNormReduce grad_norm_reduce;  ///< sum over the model group (feature parallelism)
  SquaredNormReduce head_norm_reduce;  ///< sum over the head group (head parallelism)

  Impl(const TrainerConfig& c, BatchSource& s, Logger& l, TrainerOptions o)
      : config(c), source(s), logger(l), options(std::move(o)) {
    if (options.data_parallel && options.data_parallel->size() > 1) {
      sync.emplace(*options.data_parallel, options.gradient_bucket_bytes);
    }
    const auto sum_over = [](distributed::Communicator* group) -> SquaredNormReduce {
      if (!group || group->size() == 1) return {};
      return [group](double squared) {
        at::Tensor t = at::scalar_tensor(squared, at::kDouble);
        group->all_reduce(t, distributed::ReduceOp::kSum);
        return t.item<double>();
      };
    };
    grad_norm_reduce = sum_over(options.model_parallel);
    head_norm_reduce = sum_over(options.head_parallel);
  }

  int data_size() const { return sync ? sync->size() : 1; }

  fs::path run_dir() const { return config.exp_result_path; }

  void set_schedules(std::int64_t tokens_per_batch, std::int64_t total_steps) {
    state.tokens_per_batch = tokens_per_batch;
    state.schedule = resolve_schedule_steps(config, total_steps);
    for (MemberRun& r : members) {
      const ScheduleSteps steps = resolve_schedule_steps(r.member.config, total_steps);
      r.lr.emplace(r.member.config, steps);
      r.l1_warm_up = steps.l1_warm_up;
      if (auto top_k = r.member.module->top_k()) {
        r.k = KSchedule::from_config(r.member.config, steps, *top_k);
      }
    }
    scheduled = true;
  }

  void start_fresh() {
    first_batch = source.next();
    SAES_CHECK(first_batch.has_value(), DataError, "the activation stream yielded no batch");
    std::int64_t bs = first_batch->n_tokens;
    std::int64_t valid = valid_tokens(*first_batch);
    if (sync) {
      const std::vector<double> global =
          sync->sum({static_cast<double>(bs), static_cast<double>(valid)});
      bs = static_cast<std::int64_t>(global[0]);
      valid = static_cast<std::int64_t>(global[1]);
      for (MemberRun& r : members) sync->broadcast_parameters(r.member.module->parameters());
    }
    if (valid < bs) {
      logger.warn("batch has {} valid of {} tokens; T_steps counts padding, as upstream", valid,
                  bs);
    }
    const std::int64_t total = total_training_steps(config.total_training_tokens, bs);
    set_schedules(bs, total);
    state.checkpoint_steps =
        checkpoint_steps(config.check_point_save_mode, config.n_checkpoints, total);
  }

  void open_logs() {
    if (!options.write_files) return;
    for (MemberRun& r : members) {
      if (r.log) continue;
      fs::create_directories(r.dir);
      std::optional<std::int64_t> resume_step;
      if (resumed) resume_step = state.cur_step;
      r.log.emplace(r.dir / "metrics.jsonl", resume_step);
      if (options.tensorboard) {
        r.tensorboard.emplace(r.dir, resume_step, unix_time_s());
        logger.info("tensorboard: {}", r.tensorboard->path().string());
      }
    }
  }

  // Members are handled one after the other, so only one member's step tensors (x̂, f) are alive.
  // Returns the global batch's valid tokens.
  double train_step(const TrainBatch& batch) {
    const std::int64_t step = state.cur_step;
    double global_valid = 0;
    for (MemberRun& r : members) {
      StepContext ctx;
      ctx.step = step;
      ctx.k = r.k ? r.k->k_at(step) : 0;
      ctx.l1_coefficient = l1_coefficient_at(r.member.config.l1_coefficient, step, r.l1_warm_up);
      ctx.need_stats = !r.member.config.skip_metrics_calculation;
      ctx.dead = r.metrics.dead_mask();
      const StepOutput out = r.member.module->forward_backward(batch, ctx);
      SAES_ASSERT(out.losses.count("overall_loss") == 1,
                  "forward_backward returned no overall_loss");
      const MemberStep ms = reduce_member_step(r, out, batch);
      const double loss = ms.losses.at("overall_loss");
      if (!std::isfinite(loss)) {
        const auto kept = list_checkpoints(run_dir());
        SAES_THROW(
            DataError,
            "non-finite loss {}{} at step {}; stopped before its update (last checkpoint: {}); "
            "lower trainer.lr or check the activations for NaN/Inf",
            loss, r.member.name.empty() ? "" : fmt::format(" of sweep item '{}'", r.member.name),
            step,
            kept.empty() ? std::string("none") : checkpoint_path(run_dir(), kept.back()).string());
      }
      update_member(r, ms);
      global_valid = ms.global_valid;
    }
    return global_valid;
  }

  // Statistics of this rank's share, then (data parallel) one reduction of losses, statistics and
  // firing counts over the data ranks.
  MemberStep reduce_member_step(MemberRun& r, const StepOutput& out, const TrainBatch& batch) {
    MemberStep ms;
    const at::Tensor mask = out.mask.defined() ? out.mask : batch.mask;
    ms.losses = out.losses;
    ms.metrics = out.metrics;
    ms.local_valid = valid_count(mask, batch.n_tokens);
    ms.global_valid = ms.local_valid;
    if (!r.member.config.skip_metrics_calculation) {
      ms.stats = compute_batch_stats(out.reconstructed, out.label, out.feature_acts, mask,
                                     out.fired, out.layers);
      ms.fired = ms.stats->fired;
    } else {
      ms.fired = out.fired;
    }
    if (!sync) return ms;
    std::map<std::string, double> means = out.losses;  // the module's metrics reduce as losses
    means.insert(out.metrics.begin(), out.metrics.end());
    const ReducedStep reduced =
        reduce_step(*sync, means, ms.local_valid, ms.stats ? &*ms.stats : nullptr, &ms.fired);
    for (auto& [name, value] : ms.losses) value = reduced.losses.at(name);
    for (auto& [name, value] : ms.metrics) value = reduced.losses.at(name);
    ms.global_valid = reduced.global_valid;
    if (ms.stats) ms.stats->fired = ms.fired;
    return ms;
  }

  void update_member(MemberRun& r, const MemberStep& ms) {
    const TrainerConfig& c = r.member.config;
    const std::int64_t step = state.cur_step;
    const std::vector<Parameter> params = r.member.module->parameters();
    if (sync) sync->reduce_gradients(params, ms.local_valid, ms.global_valid);
    const double before =
        clip_grad_norm(params, c.clip_grad_norm, grad_norm_reduce, head_norm_reduce);
    const bool clipped = c.clip_grad_norm > 0 && before > c.clip_grad_norm;
    const double after = clipped ? before * c.clip_grad_norm / (before + 1e-6) : before;
    const double lr = c.lr * r.lr->factor(step);
    if (ms.stats) {
      StepRecord rec;
      rec.losses = ms.losses;
      rec.metrics = ms.metrics;
      rec.stats = ms.stats;
      r.metrics.track_firing(ms.fired, ms.stats->n_tokens);
      rec.grad_norm_before_clipping = before;
      rec.grad_norm_after_clipping = after;
      rec.learning_rate = lr;
      rec.l1_coefficient = l1_coefficient_at(c.l1_coefficient, step, r.l1_warm_up);
      rec.lp_coefficient = c.lp_coefficient;
      rec.auxk_coefficient = c.auxk_coefficient;
      rec.n_training_tokens = state.cur_tokens;
      r.metrics.update(rec);
      if (r.metrics.should_log(step)) log_metrics(r, step);
    } else if (ms.fired.defined()) {
      r.metrics.track_firing(ms.fired, ms.global_valid);
    }
    r.optimizer.set_lr(lr);
    r.optimizer.step(params);
  }

  void log_metrics(MemberRun& r, std::int64_t step) {
    std::map<std::string, double> stats = r.member.module->statistics();
    if (const at::Tensor freq = r.metrics.window_frequency(); freq.defined()) {
      stats.merge(r.member.module->frequency_statistics(freq));
    }
    if (r.k) stats["sparsity/k"] = static_cast<double>(r.k->k_at(step));
    const MetricValues values = r.metrics.flush(stats);
    if (r.log) r.log->write(step + 1, values);
    if (r.tensorboard) r.tensorboard->write_scalars(step + 1, values, unix_time_s());
    r.summary = console_summary(values);
  }

  std::string progress_text() const {
    std::string text;
    for (const MemberRun& r : members) {
      if (r.summary.empty()) continue;
      if (!text.empty()) text += "; ";
      text += r.member.name.empty() ? r.summary : r.member.name + ": " + r.summary;
    }
    return text;
  }

  // Every rank takes part (a feature-sharded member gathers its weights and optimizer state for
  // the writer); only ranks with write_files write.
  fs::path save_checkpoint() {
    state.stream_state = source.state();
    if (sync) sync->agree(state.stream_state, "the stream position of the checkpoint");
    const fs::path final_dir = checkpoint_path(run_dir(), state.cur_step);
    const bool write = options.write_files;
    std::optional<CheckpointStaging> staging;
    if (write) staging.emplace(run_dir(), state.cur_step);
    for (const MemberRun& r : members) {
      fs::path dir;
      if (write) {
        dir = r.member.name.empty() ? staging->dir() : staging->dir() / r.member.name;
        fs::create_directories(dir);
      }
      r.member.module->save(dir, write);
      std::vector<std::pair<std::string, at::Tensor>> optimizer_state;
      for (auto& [name, t] : r.optimizer.state_tensors()) {
        optimizer_state.emplace_back(name, r.member.module->gather_state(parameter_of(name), t));
      }
      if (!write) continue;
      io::save_safetensors(dir / kOptimizerFile, optimizer_state);
      io::save_safetensors(dir / kMetricsStateFile, r.metrics.state_tensors());
    }
    if (!write) return final_dir;
    save_trainer_state(staging->dir(), state);
    const fs::path committed = staging->commit();
    prune_checkpoints(run_dir(), config.keep_last_checkpoints);
    logger.info("checkpoint written: {}", committed.string());
    return committed;
  }

  // Data parallel: all ranks stop at the same step when any of them got the signal.
  bool stop_requested() {
    const bool local = options.signals && options.signals->requested();
    return sync ? sync->any(local) : local;
  }

  bool checkpoint_due(std::int64_t previous_step) const {
    for (std::int64_t s : state.checkpoint_steps) {
      if (s > previous_step && s <= state.cur_step) return true;
    }
    return false;
  }
};

at::Tensor TrainableModule::gather_state(const std::string& /*param*/, const at::Tensor& t) const {
  return t;
}

at::Tensor TrainableModule::local_state(const std::string& /*param*/, const at::Tensor& t) const {
  return t;
}

Trainer::Trainer(const TrainerConfig& config, std::vector<TrainerMember> members,
                 BatchSource& source, Logger& logger, TrainerOptions options)
    : impl_(std::make_unique<Impl>(config, source, logger, std::move(options))) {
  SAES_CHECK(!members.empty(), ConfigError, "trainer: no dictionary to train");
  std::set<std::string> names;
  for (TrainerMember& m : members) {
    SAES_ASSERT(m.module != nullptr, "trainer member '{}' has no module", m.name);
    check_member_name(m.name, members.size());
    SAES_CHECK(names.insert(m.name).second, ConfigError, "trainer: dictionary name '{}' repeats",
               m.name);
    impl_->state.members.push_back(m.name);
    impl_->members.emplace_back(std::move(m), impl_->run_dir(), config.log_frequency);
  }
}

Trainer::~Trainer() = default;

std::int64_t Trainer::cur_step() const { return impl_->state.cur_step; }
std::int64_t Trainer::cur_tokens() const { return impl_->state.cur_tokens; }

void Trainer::resume(const fs::path& checkpoint_dir) {
  Impl& d = *impl_;
  SAES_ASSERT(!d.scheduled, "Trainer::resume must be called before fit()");
  TrainerState loaded = load_trainer_state(checkpoint_dir);
  SAES_CHECK(loaded.members == d.state.members, DataError,
             "{}: checkpoint has {} dictionaries, the run configures {} (names must match)",
             checkpoint_dir.string(), loaded.members.size(), d.state.members.size());
  d.state = loaded;
  d.set_schedules(loaded.tokens_per_batch, loaded.schedule.total);
  d.source.restore(loaded.stream_state);
  for (MemberRun& r : d.members) {
    const fs::path dir = r.member.name.empty() ? checkpoint_dir : checkpoint_dir / r.member.name;
    r.member.module->load(dir);
    std::map<std::string, at::Tensor> optimizer_state = read_tensors(dir / kOptimizerFile);
    for (auto& [name, t] : optimizer_state) {
      t = r.member.module->local_state(parameter_of(name), t);
    }
    r.optimizer.load_state(optimizer_state);
    r.metrics.load_state(read_tensors(dir / kMetricsStateFile));
  }
  d.resumed = true;
  d.logger.info("resumed from {} at step {} ({} tokens)", checkpoint_dir.string(), d.state.cur_step,
                d.state.cur_tokens);
}

fs::path Trainer::save_checkpoint() { return impl_->save_checkpoint(); }

FitResult Trainer::fit() {
  Impl& d = *impl_;
  if (!d.scheduled) d.start_fresh();
  d.open_logs();
  const std::int64_t total = d.state.schedule.total;
  Progress progress(d.logger, "train", (total - d.state.cur_step) * d.state.tokens_per_batch, "tok",
                    d.options.progress, d.options.progress_interval_s);
  FitResult result;
  while (d.state.cur_step < total) {
    std::optional<TrainBatch> batch = std::move(d.first_batch);
    d.first_batch.reset();
    if (!batch) batch = d.source.next();
    if (d.sync ? d.sync->any(!batch) : !batch) {
      d.logger.warn("activation stream ended at step {} of {}", d.state.cur_step, total);
      result.outcome = FitOutcome::kStreamExhausted;
      result.checkpoint = d.save_checkpoint();
      break;
    }
    const double global_valid = d.train_step(*batch);
    const std::int64_t previous = d.state.cur_step;
    d.state.cur_step += 1;
    d.state.cur_tokens += static_cast<std::int64_t>(global_valid);
    progress.advance(batch->n_tokens * d.data_size(), d.progress_text());
    bool saved = false;
    if (d.checkpoint_due(previous)) {
      result.checkpoint = d.save_checkpoint();
      saved = true;
    }
    if (d.stop_requested() && d.state.cur_step < total) {
      const bool here = d.options.signals && d.options.signals->requested();
      d.logger.warn("{} received: checkpointing at step {} and stopping",
                    here ? fmt::format("signal {}", d.options.signals->signal_number())
                         : std::string("a stop signal of another data-parallel rank"),
                    d.state.cur_step);
      if (!saved) result.checkpoint = d.save_checkpoint();
      result.outcome = FitOutcome::kInterrupted;
      break;
    }
  }
  if (d.state.cur_step >= total) {
    result.outcome = FitOutcome::kCompleted;
    for (const MemberRun& r : d.members) r.member.module->save(r.dir, d.options.write_files);
  }
  progress.finish(d.progress_text());
  result.steps = d.state.cur_step;
  result.tokens = d.state.cur_tokens;
  return result;
}

}  // namespace saes::training
