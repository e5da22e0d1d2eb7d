#include "kvprime/experiment/distributed.h"

#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <utility>

#include <nlohmann/json.hpp>

#include "kvprime/core/compat.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/experiment/dataset.h"
#include "kvprime/experiment/sink.h"
#include "kvprime/model/model.h"
#include "kvprime/tokenizer/tokenizer.h"

#if KVPRIME_WITH_MPI
#include <mpi.h>
#endif

namespace kvprime {

// ---- wire format (no MPI needed) ------------------------------------------------------------------

namespace {

nlohmann::json opt_json(const std::optional<double>& x) { return x ? nlohmann::json(*x) : nlohmann::json(); }
std::optional<double> json_opt(const nlohmann::json& j) {
  return j.is_null() ? std::nullopt : std::optional<double>(j.get<double>());
}

}  // namespace

std::vector<uint8_t> encode_rows(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures) {
  nlohmann::json j = {{"rows", nlohmann::json::array()}, {"failures", nlohmann::json::array()}};
  for (const ResultRow& r : rows)
    j["rows"].push_back({r.sample_id, r.sample_index, r.condition, r.candidate, r.nll, r.n_scored,
                         r.token_nll, opt_json(r.pmi), opt_json(r.baseline_nll), r.prefix_tokens,
                         r.doc_tokens, r.cache_len, r.prefix_text, r.seconds, r.extra});
  for (const FailureRow& f : failures)
    j["failures"].push_back({f.sample_id, f.sample_index, f.condition, f.candidate, f.what, f.detail});
  return nlohmann::json::to_cbor(j);
}

void decode_rows(const std::vector<uint8_t>& bytes, std::vector<ResultRow>& rows,
                 std::vector<FailureRow>& failures) {
  nlohmann::json j = nlohmann::json::from_cbor(bytes, /*strict=*/true, /*allow_exceptions=*/false);
  KVP_CHECK(!j.is_discarded() && j.is_object() && j.contains("rows") && j.contains("failures"),
            "distributed run: a rank sent rows that are not valid CBOR (", bytes.size(), " bytes)");
  try {
    for (const auto& a : j["rows"]) {
      ResultRow r;
      r.sample_id = a.at(0).get<std::string>();
      r.sample_index = a.at(1).get<int64_t>();
      r.condition = a.at(2).get<std::string>();
      r.candidate = a.at(3).get<int64_t>();
      r.nll = a.at(4).get<double>();
      r.n_scored = a.at(5).get<int64_t>();
      r.token_nll = a.at(6).get<std::vector<double>>();
      r.pmi = json_opt(a.at(7));
      r.baseline_nll = json_opt(a.at(8));
      r.prefix_tokens = a.at(9).get<int64_t>();
      r.doc_tokens = a.at(10).get<int64_t>();
      r.cache_len = a.at(11).get<int64_t>();
      r.prefix_text = a.at(12).get<std::string>();
      r.seconds = a.at(13).get<double>();
      r.extra = a.at(14);
      rows.push_back(std::move(r));
    }
    for (const auto& a : j["failures"])
      failures.push_back({a.at(0).get<std::string>(), a.at(1).get<int64_t>(), a.at(2).get<std::string>(),
                          a.at(3).get<int64_t>(), a.at(4).get<std::string>(), a.at(5).get<std::string>()});
  } catch (const nlohmann::json::exception& e) {
    KVP_FAIL("distributed run: a rank sent malformed rows: ", e.what());
  }
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

std::string rank_device(const std::string& device, const MpiWorld& world, int n_gpus) {
  if (device != "cuda" || n_gpus <= 0) return device;
  return "cuda:" + std::to_string(world.local_rank % n_gpus);
}

#if KVPRIME_WITH_MPI

bool built_with_mpi() { return true; }

namespace {

// kRows: a chunk's rows (CBOR); kDone: a rank's end, with its counts (5 x int64: samples,
// rows_done_before, rows_computed, tokens, interrupted), sent after its last rows (MPI keeps the
// order of messages between two ranks).
enum Tag : int { kRows = 1, kDone = 2 };

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  KVP_FAIL("MPI: ", what, " failed: ", std::string(msg, static_cast<size_t>(len)));
}

void bcast_bytes(std::vector<uint8_t>& bytes, int root) {
  uint64_t n = bytes.size();
  check_mpi(MPI_Bcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD), "MPI_Bcast");
  bytes.resize(n);
  if (n) check_mpi(MPI_Bcast(bytes.data(), static_cast<int>(n), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
}

std::vector<uint8_t> recv_bytes(MPI_Status& st) {
  int n = 0;
  MPI_Get_count(&st, MPI_BYTE, &n);
  std::vector<uint8_t> b(static_cast<size_t>(n));
  check_mpi(MPI_Recv(b.data(), n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
            "MPI_Recv");
  return b;
}

using DoneSet = std::set<std::pair<std::string, std::string>>;

std::vector<uint8_t> encode_done(const DoneSet& d) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [s, c] : d) j.push_back({s, c});
  return nlohmann::json::to_cbor(j);
}

DoneSet decode_done(const std::vector<uint8_t>& b) {
  DoneSet d;
  for (const auto& p : nlohmann::json::from_cbor(b)) d.insert({p.at(0).get<std::string>(), p.at(1).get<std::string>()});
  return d;
}

// Rank 0: the store, its own rows, and every other rank's as they arrive.
class WriterSink : public ResultSink {
 public:
  WriterSink(const ExperimentSpec& spec, StoreMode mode, int size)
      : store_(spec.store_path(), spec.name, spec.results_identity(), mode), size_(size) {
    done_ = store_.done();
    std::vector<uint8_t> b = encode_done(done_);
    bcast_bytes(b, 0);
  }
  DoneSet done() override { return done_; }
  void put(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures) override {
    store_.put(rows, failures);
    drain(/*block=*/false);
  }
  void finish(bool interrupted) override {
    any_interrupted_ = any_interrupted_ || interrupted;
    while (finished_ranks_ < size_ - 1) drain(/*block=*/true);
    store_.finish(any_interrupted_);
  }
  int64_t failures() override { return store_.failures(); }
  bool any_interrupted() const { return any_interrupted_; }
  // The other ranks' counts, summed (valid after finish).
  const int64_t* others() const { return others_; }

 private:
  // Stores what the other ranks sent; with `block`, waits for at least one message.
  void drain(bool block) {
    for (;;) {
      MPI_Status st;
      int flag = 0;
      if (block) {
        check_mpi(MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st), "MPI_Probe");
        flag = 1;
        block = false;
      } else {
        check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st), "MPI_Iprobe");
      }
      if (!flag) return;
      std::vector<uint8_t> b = recv_bytes(st);
      if (st.MPI_TAG == kRows) {
        std::vector<ResultRow> rows;
        std::vector<FailureRow> failures;
        decode_rows(b, rows, failures);
        store_.put(rows, failures);
      } else if (st.MPI_TAG == kDone) {
        KVP_CHECK(b.size() == 5 * sizeof(int64_t), "distributed run: rank ", st.MPI_SOURCE,
                  " ended with a malformed message");
        int64_t v[5];
        std::memcpy(v, b.data(), sizeof v);
        for (int i = 0; i < 5; ++i) others_[i] += v[i];
        if (v[4]) any_interrupted_ = true;
        ++finished_ranks_;
      }
    }
  }

  StoreSink store_;
  DoneSet done_;
  int size_;
  int finished_ranks_ = 0;
  bool any_interrupted_ = false;
  int64_t others_[5] = {0, 0, 0, 0, 0};
};

// Ranks > 0: rows go to rank 0 (non-blocking sends; the buffers live until they complete).
class WorkerSink : public ResultSink {
 public:
  WorkerSink() {
    std::vector<uint8_t> b;
    bcast_bytes(b, 0);
    done_ = decode_done(b);
  }
  ~WorkerSink() override { wait_all(); }
  DoneSet done() override { return done_; }
  void put(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures) override {
    pending_.emplace_back(encode_rows(rows, failures), MPI_REQUEST_NULL);
    auto& [buf, req] = pending_.back();
    check_mpi(MPI_Isend(buf.data(), static_cast<int>(buf.size()), MPI_BYTE, 0, kRows, MPI_COMM_WORLD, &req),
              "MPI_Isend");
    failures_ += static_cast<int64_t>(failures.size());
    reap();
  }
  // The rows are on their way; run_experiment_distributed then sends kDone with the counts.
  void finish(bool) override { wait_all(); }
  int64_t failures() override { return failures_; }

 private:
  void reap() {
    for (auto it = pending_.begin(); it != pending_.end();) {
      int flag = 0;
      check_mpi(MPI_Test(&it->second, &flag, MPI_STATUS_IGNORE), "MPI_Test");
      it = flag ? pending_.erase(it) : std::next(it);
    }
  }
  void wait_all() {
    for (auto& p : pending_) MPI_Wait(&p.second, MPI_STATUS_IGNORE);
    pending_.clear();
  }

  DoneSet done_;
  std::list<std::pair<std::vector<uint8_t>, MPI_Request>> pending_;
  int64_t failures_ = 0;
};

}  // namespace

MpiSession::MpiSession() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    finalize_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world_.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_.size);
  MPI_Comm local;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_.rank, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  MPI_Comm_rank(local, &world_.local_rank);
  MPI_Comm_size(local, &world_.local_size);
  MPI_Comm_free(&local);
}

MpiSession::~MpiSession() {
  if (finalize_) MPI_Finalize();
}

void MpiSession::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

RunSummary run_experiment_distributed(const ExperimentSpec& spec, const RunOptions& options,
                                      const MpiWorld& world) {
  LoadOptions lo = load_options_for(spec);
  lo.device = parse_device(rank_device(spec.device, world, compat::cuda_device_count()),
                           spec.source + ": experiment.device");
  Model model = Model::load(spec.model, lo);
  Tokenizer tok = Tokenizer::from_checkpoint(spec.model);
  ExperimentRunner runner(spec, model, tok, read_dataset(spec.dataset, dataset_options_for(spec)));

  RunOptions ro = options;
  ro.shard_index = world.rank;
  ro.shard_count = world.size;
  ro.progress = options.progress && world.rank == 0;
  if (world.rank == 0) {
    WriterSink sink(spec, options.new_run ? StoreMode::NewRun : StoreMode::Resume, world.size);
    ro.sink = &sink;
    RunSummary total = runner.run(ro);  // its finish() waited for every rank's kDone
    const int64_t* v = sink.others();
    total.samples += v[0];
    total.rows_done_before += v[1];
    total.rows_computed += v[2];
    total.tokens += v[3];
    total.interrupted = total.interrupted || sink.any_interrupted();
    total.failures = sink.failures();
    return total;
  }
  WorkerSink sink;
  ro.sink = &sink;
  RunSummary s = runner.run(ro);
  const int64_t v[5] = {s.samples, s.rows_done_before, s.rows_computed, s.tokens, s.interrupted ? 1 : 0};
  check_mpi(MPI_Send(v, static_cast<int>(sizeof v), MPI_BYTE, 0, kDone, MPI_COMM_WORLD), "MPI_Send");
  return s;
}

#else  // !KVPRIME_WITH_MPI

bool built_with_mpi() { return false; }

namespace {
[[noreturn]] void no_mpi() {
  KVP_FAIL("this kvprime was built without MPI: install OpenMPI (Debian: libopenmpi-dev openmpi-bin) "
           "and rebuild (CMake finds it; KVPRIME_WITH_MPI=ON)");
}
}  // namespace

MpiSession::MpiSession() { no_mpi(); }
MpiSession::~MpiSession() = default;
void MpiSession::abort(int code) { std::_Exit(code); }
RunSummary run_experiment_distributed(const ExperimentSpec&, const RunOptions&, const MpiWorld&) { no_mpi(); }

#endif

}  // namespace kvprime
