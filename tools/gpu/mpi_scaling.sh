#!/usr/bin/env bash
# Issue 10 on the GPU machine kind nvidia-h200-x2 (device tool, repository root; carry .gpu/pack,
# tools/gpu/pack_openmpi.sh's archive of OpenMPI and the build dependencies, and
# third_party/npm/llama2):
# builds the kvprime CLI with MPI against the machine's PyTorch, writes the random 7.24B
# Mistral-shaped checkpoint, and runs the demo experiment's 8 conditions on all 203 demo samples
# in bf16 with that model, as one process, as `mpirun -np 1` and as `mpirun -np 2` (one GPU per
# rank); prints samples/s of each and the 2-GPU scaling efficiency, and checks that the 2-rank
# rows equal the 1-rank rows. Logs in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d .gpu/openmpi ] && [ -d .gpu/deps ] || tar -C .gpu -xJf .gpu/pack/mpi_build.tar.xz
source .gpu/openmpi/env.sh
nvidia-smi -L | tee "$OUT/gpus.txt"
source tools/gpu/mistral7b.sh
start_mistral7b
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
B=build-gpu-mpi
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVPRIME_BUILD_TESTS=OFF \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PWD/.gpu/deps" -DMPI_CXX_COMPILER="$KVPRIME_MPI_CXX_COMPILER" \
  -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
grep "kvprime: MPI" "$OUT/cmake.log"
cmake --build $B -j "$(nproc)" --target kvprime >"$OUT/build.log" 2>&1 ||
  { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
wait_mistral7b
W=/tmp/mpi_scaling; rm -rf $W; mkdir -p $W
# The demo experiment with the 7B model, every sample, bf16 on CUDA.
sed -e "s|^model = .*|model = \"$MODEL\"|" -e "s|^dataset = .*|dataset = \"$PWD/data/demo/qa.jsonl\"|" \
    -e 's|^dtype = .*|dtype = "bfloat16"|' -e 's|^device = .*|device = "cuda"|' \
    -e 's|^samples = .*|samples = 0|' -e 's|^out = .*|out = "OUT_DIR"|' examples/demo.toml > $W/base.toml
run() {  # name, launcher...
  local name=$1; shift
  sed "s|OUT_DIR|$W/$name|" $W/base.toml > $W/$name.toml
  local t0=$(date +%s.%N)
  "$@" $B/kvprime run $W/$name.toml > $W/$name.log 2>&1; local rc=$?
  local t1=$(date +%s.%N)
  echo "$name: rc=$rc wall=$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s; $(grep -o '[0-9]* samples x [0-9]* conditions.*tokens/s)' $W/$name.log)"
  [ $rc -eq 0 ] || tail -5 $W/$name.log
}
run warmup                                   # page cache, CUDA context, cuBLAS heuristics
run single
run np1 mpirun -np 1 -x CUDA_VISIBLE_DEVICES
run np2 mpirun -np 2 -x CUDA_VISIBLE_DEVICES
python3 - "$W" "$(nvidia-smi -L | wc -l)" <<'PY' | tee "$OUT/scaling.txt"
import re, sqlite3, sys
w = sys.argv[1]
def rate(name):
    m = re.search(r"(\d+) samples x (\d+) conditions; \d+ rows were stored, (\d+) computed in ([0-9.e+-]+) s",
                  open(f"{w}/{name}.log").read())
    samples, conds, rows, secs = int(m[1]), int(m[2]), int(m[3]), float(m[4])
    return samples, rows, secs, samples / secs
def rows(name):
    c = sqlite3.connect(f"{w}/{name}/results.sqlite")
    return sorted(c.execute("select sample_id, condition, candidate, nll from results"))
for n in ("single", "np1", "np2"):
    s, r, t, sps = rate(n)
    print(f"{n}: {s} samples, {r} rows in {t:.2f} s: {sps:.2f} samples/s")
one, two = rate("np1")[3], rate("np2")[3]
gpus = int(sys.argv[2])
what = "2 GPUs / 1 GPU" if gpus >= 2 else "2 ranks sharing 1 GPU / 1 rank"
print(f"{what} (mpirun -np 2 vs -np 1, {gpus} GPU(s)): {two / one:.3f}x, scaling efficiency {two / one / 2:.1%}")
a, b = rows("np1"), rows("np2")
print(f"rows: {len(a)} (1 rank) vs {len(b)} (2 ranks), identical: {a == b}, "
      f"max |nll diff| {max((abs(x[3] - y[3]) for x, y in zip(a, b)), default=0):.3g}")
PY
