#include "kvprime/experiment/sink.h"

namespace kvprime {

StoreSink::StoreSink(const std::string& path, const std::string& run_name, const nlohmann::json& config,
                     StoreMode mode)
    : store_(ResultStore::open(path, run_name, config, mode)) {}

}  // namespace kvprime
