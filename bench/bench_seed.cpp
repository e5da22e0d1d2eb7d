// bench_seed: `kvprime bench` as a standalone program (tools/gpu/seed_checks.sh builds only this).
//
//   bench_seed [--model DIR] [--dtype bfloat16] [--device cuda] [--data JSONL] [--samples 256]
//              [--seed-samples 32] [--batch 64[,256..]] [--out DIR] [--json-out FILE]
#include <iostream>
#include <string>

#include "kvprime/experiment/seed_bench.h"

int main(int argc, char** argv) {
  kvprime::SeedBenchOptions o;
  o.model_dir = std::string(KVPRIME_SOURCE_DIR) + "/models/demo";
  o.data = std::string(KVPRIME_SOURCE_DIR) + "/data/demo/qa.jsonl";
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--model") o.model_dir = next();
      else if (a == "--dtype") o.dtype = next();
      else if (a == "--device") o.device = next();
      else if (a == "--data") o.data = next();
      else if (a == "--samples") o.samples = std::stoul(next());
      else if (a == "--seed-samples") o.seed_samples = std::stoul(next());
      else if (a == "--batch") {  // one or more chunk sizes: 64 or 64,256
        o.batch.clear();
        std::string v = next();
        for (size_t p = 0; p <= v.size();) {
          const size_t q = std::min(v.find(',', p), v.size());
          o.batch.push_back(std::stol(v.substr(p, q - p)));
          p = q + 1;
        }
      }
      else if (a == "--out") o.out_dir = next();
      else if (a == "--json-out") o.json_out = next();
      else throw std::runtime_error("unknown argument " + a);
    }
    return kvprime::run_seed_bench(o);
  } catch (const std::exception& e) {
    std::cerr << "bench_seed: " << e.what() << "\nusage: bench_seed [--model DIR] [--dtype D] [--device D] "
                 "[--data JSONL] [--samples N] [--seed-samples N] [--batch B] [--out DIR] [--json-out FILE]\n";
    return 2;
  }
}
