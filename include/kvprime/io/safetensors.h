// safetensors files (https://github.com/huggingface/safetensors format): an 8-byte little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__":
// {str: str}}, then the data. Files are memory-mapped; tensors are zero-copy CPU views that keep
// the mapping alive.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kvprime {

struct TensorInfo {
  std::string name;
  std::string dtype;            // as written in the header: "F32", "BF16", "I64", ...
  at::ScalarType scalar_type;   // the ATen type of `dtype`
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the start of the data section
};

class MappedFile;  // defined in the .cpp: mmap of a whole file, unmapped when the last user goes

// One validated .safetensors file. open() checks: the file is at least 8 bytes, the header length
// fits in the file, the header is a JSON object, every dtype is known (F64 F32 F16 BF16 I64 I32 I16
// I8 U8 BOOL), shape x dtype size equals the byte range, every range lies inside the data section,
// ranges do not overlap. Every error names the file and the tensor and says what to do.
class SafeTensorsFile {
 public:
  static SafeTensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming the file if missing
  // Zero-copy CPU tensor over the mapping (read-only memory: clone before writing to it).
  at::Tensor tensor(const std::string& name) const;
  // The raw header JSON text (used for fingerprints).
  const std::string& header_json() const { return header_json_; }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::string header_json_;
  uint64_t data_offset_ = 0;
};

// A Hugging Face checkpoint directory: either one `model.safetensors` or shards listed by
// `model.safetensors.index.json` ({"weight_map": {tensor: file}}). Missing shards, tensors named
// twice, or index entries pointing at a shard that lacks the tensor are clear errors.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;  // zero-copy CPU view
  const std::string& file_of(const std::string& name) const;
  // Stable hash (hex) of all shard headers: identifies these weights without reading them.
  std::string fingerprint() const;

 private:
  std::string dir_;
  std::vector<SafeTensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

// Writes tensors (any device, contiguous copies are made on CPU) with string metadata.
// Supported dtypes: float64/32/16, bfloat16, int64/32/16/8, uint8, bool. Writes to
// `path + ".tmp"` and renames, so a crash never leaves a half-written file under `path`.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace kvprime
