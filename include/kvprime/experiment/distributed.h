// Experiments sharded over MPI ranks: `mpirun -np N kvprime run experiment.toml`.
//
// Every rank loads the model (on CUDA: local rank r takes GPU r % device_count when the experiment
// says "cuda") and runs the chunks k with k % N == rank (ExperimentRunner's sharding: whole chunks,
// so each row is computed with the shapes of a single-process run and comes out bit-identical).
// Rank 0 alone opens the SQLite store: it broadcasts what is stored (a re-run resumes every shard
// where it stopped), stores its own rows, and receives the other ranks' rows (CBOR over MPI) and
// stores them as they arrive, so the ranks need no shared file system. The run is marked finished
// when every rank has finished; a killed run keeps every chunk that reached rank 0.
//
// Without MPI (KVPRIME_WITH_MPI off at build time) built_with_mpi() is false and the functions
// that need MPI throw.
#pragma once

#include <string>
#include <vector>

#include "kvprime/experiment/runner.h"
#include "kvprime/experiment/spec.h"
#include "kvprime/experiment/store.h"

namespace kvprime {

struct MpiWorld {
  int rank = 0, size = 1;              // MPI_COMM_WORLD
  int local_rank = 0, local_size = 1;  // among the ranks of this host (MPI_COMM_TYPE_SHARED)
};

bool built_with_mpi();
// Whether this process was started by an MPI launcher (mpirun / srun set OMPI_COMM_WORLD_SIZE,
// PMI_SIZE or PMIX_RANK), without initialising MPI.
bool launched_by_mpi();

// MPI_Init on construction (if not yet initialised), MPI_Finalize on destruction.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  const MpiWorld& world() const { return world_; }
  // Ends every rank (MPI_Abort): an error on one rank must not leave the others waiting.
  [[noreturn]] static void abort(int code);

 private:
  MpiWorld world_;
  bool finalize_ = false;
};

// The device a rank uses: "cuda" (no index) becomes "cuda:<local_rank % n_gpus>"; anything else
// is kept.
std::string rank_device(const std::string& device, const MpiWorld& world, int n_gpus);

// run_experiment over the ranks of `world` (every rank calls it). On rank 0 the summary counts
// every rank's rows; on the others, their own.
RunSummary run_experiment_distributed(const ExperimentSpec& spec, const RunOptions& options,
                                      const MpiWorld& world);

// The wire format of a chunk's rows (CBOR: doubles exact, NaN included). Independent of MPI.
std::vector<uint8_t> encode_rows(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures);
void decode_rows(const std::vector<uint8_t>& bytes, std::vector<ResultRow>& rows,
                 std::vector<FailureRow>& failures);

}  // namespace kvprime
