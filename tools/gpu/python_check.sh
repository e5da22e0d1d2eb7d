#!/usr/bin/env bash
# Issue 9 on the GPU machine (device tool, repository root, .gpu carried): builds the Python
# extension against the machine's PyTorch 2.x (CUDA) and runs the Python suites there (the CUDA
# case of tests/python/test_bindings.py included). Logs in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PY=${PY:-python3}
{
  $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  $PY -c 'import sysconfig, os; inc = sysconfig.get_paths()["include"]; print("Python.h:", os.path.exists(inc + "/Python.h"), inc)'
  $PY -m pytest --version || echo "no pytest"
} 2>&1 | tee "$OUT/env.txt"
TORCH_PREFIX=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')
# The extension is a shared object: Debian's libsqlite3.a in .gpu/deps is not position-independent,
# so link the machine's shared SQLite (Python's sqlite3 module uses it) when there is one.
SQLITE_ARGS=()
for so in /usr/lib/x86_64-linux-gnu/libsqlite3.so /usr/lib/x86_64-linux-gnu/libsqlite3.so.0; do
  if [ -e "$so" ]; then SQLITE_ARGS=(-DSQLite3_LIBRARY="$so"); break; fi
done
echo "sqlite: ${SQLITE_ARGS[*]:-none found}" | tee -a "$OUT/env.txt"
# The system's g++, whose libstdc++ is the one the Python process loads: the machine's default
# compiler (/opt/gcc) links parts of its newer libstdc++ into the shared object, and those copies
# crash against the process's libstdc++ (std::ostream number formatting, a segfault in every error
# message with a number in it). Executables are not affected.
export CXX=${PY_CXX:-/usr/bin/g++} CC=${PY_CC:-/usr/bin/gcc} CUDAHOSTCXX=${PY_CXX:-/usr/bin/g++}
echo "compiler: $($CXX --version | head -1)" | tee -a "$OUT/env.txt"
B=build-gpu-py
t0=$(date +%s)
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PWD/.gpu/deps" -DKVPRIME_BUILD_TESTS=OFF \
  -DKVPRIME_BUILD_PYTHON=ON -DPython3_EXECUTABLE="$(command -v $PY)" \
  -DCMAKE_CUDA_ARCHITECTURES=90 "${SQLITE_ARGS[@]}" >"$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
cmake --build $B -j "$(nproc)" --target kvprime _kvprime >"$OUT/build.log" 2>&1 ||
  { grep -E "error|Error" -A3 "$OUT/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
export PYTHONPATH=$PWD/$B/python KVPRIME_CLI=$PWD/$B/kvprime KVPRIME_SOURCE_DIR=$PWD \
       KVPRIME_BUILD_DIR=$PWD/$B KVPRIME_PYTHON=$(command -v $PY)
$PY -m pytest -q -p no:cacheprovider -rs tests/python ${PYTEST_ARGS:-} 2>&1 | tee "$OUT/pytest.log" | tail -40
