// The `kvprime._kvprime` extension module (pybind11): one bind_* function per concept, each in its own
// translation unit so that the heavy torch/pybind11 headers compile in parallel.
//
// Tensors cross the boundary as torch.Tensor <-> at::Tensor through LibTorch's own pybind11 caster
// (torch/csrc/utils/pybind.h): the same TensorImpl on both sides, so a cache's per-layer keys and
// values are the C++ cache's tensors, not copies. That needs the extension and the `torch` module to
// use one libtorch: kvprime/__init__.py imports torch first, and CMake builds against the torch that
// the chosen Python imports (python/CMakeLists.txt).
#pragma once

#include <torch/csrc/utils/pybind.h>

#include <nlohmann/json.hpp>

namespace kvprime::py {

namespace pyb = pybind11;

void bind_core(pyb::module_& m);        // errors, versions
void bind_model(pyb::module_& m);       // Model, Tokenizer, ModelConfig (read-only view)
void bind_cache(pyb::module_& m);       // KVCache, surgery, the seed's RoPE, cache files, batching
void bind_prime(pyb::module_& m);       // ExperimentConfig, the seed's builders, scoring
void bind_experiment(pyb::module_& m);  // experiment specs, runner, results store, report

// JSON <-> Python objects (through the json module: values are small: configs, reports, rows' extra).
pyb::object to_python(const nlohmann::json& j);
nlohmann::json from_python(const pyb::handle& o);

}  // namespace kvprime::py
