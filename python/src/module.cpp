// PYBIND11_MODULE for kvprime._kvprime; the Python package (python/kvprime/__init__.py) re-exports it.
#include "bindings.h"

#include <c10/util/Exception.h>

#include "kvprime/core/error.h"
#include "kvprime/core/version.h"

namespace kvprime::py {

pyb::object to_python(const nlohmann::json& j) {
  return pyb::module_::import("json").attr("loads")(j.dump());
}

nlohmann::json from_python(const pyb::handle& o) {
  auto text = pyb::module_::import("json").attr("dumps")(o).cast<std::string>();
  return nlohmann::json::parse(text);
}

void bind_core(pyb::module_& m) {
  m.attr("__version__") = kVersion;
  // kvprime::Error (bad input: a file, an argument, a mismatch; the message names it and the fix)
  // is kvprime.Error, a ValueError; LibTorch's c10::Error becomes a RuntimeError with its message
  // but without the C++ backtrace (which says nothing to a Python user).
  static pyb::exception<Error> error(m, "Error", PyExc_ValueError);
  pyb::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
#if PYBIND11_VERSION_HEX >= 0x020C0000  // pybind11 2.12 (PyTorch 2.x ships newer ones) deprecates error()
      pyb::set_error(error, e.what());
#else
      error(e.what());  // Debian's pybind11 2.10
#endif
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });
}

}  // namespace kvprime::py

PYBIND11_MODULE(_kvprime, m) {
  m.doc() = "kvprime: transformer KV caches built, operated on and scored in C++ (LibTorch)";
  kvprime::py::bind_core(m);
  kvprime::py::bind_model(m);
  kvprime::py::bind_cache(m);
  kvprime::py::bind_prime(m);
  kvprime::py::bind_experiment(m);
}
