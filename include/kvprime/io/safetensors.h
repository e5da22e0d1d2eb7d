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
  at::ScalarType scalar_type = at::ScalarType::Undefined;  // the ATen type of `dtype`
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the start of the data section
};

class MappedFile;  // src/io/mapped_file.h: mmap of a whole file, unmapped when the last user goes

// One validated .safetensors file. open() checks: the file is at least 8 bytes, the header length
// fits in the file (and is at most 100 MB), the header is a JSON object without duplicate keys,
// "__metadata__" (optional) maps strings to strings, every dtype is known (F64 F32 F16 BF16 I64 I32
// I16 I8 U8 BOOL), shapes are non-negative integers, shape x dtype size equals the byte range,
// every range lies inside the data section, ranges do not overlap. Every error names the file and
// the tensor and says what to do. Gaps between ranges and trailing bytes are accepted (a writer may
// pad for alignment). Copies share the mapping; the object is cheap to copy.
class SafeTensorsFile {
 public:
  static SafeTensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  // In file order: sorted by where the data lies (begin offset), then by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming the file if missing
  // Zero-copy CPU tensor over the mapping (read-only memory: clone before writing to it). The
  // tensor keeps the file mapped after this object is gone. Exceptions, which return a fresh copy:
  // data not aligned to the element size (an oddly padding writer) and empty tensors. BOOL data is
  // checked to hold only 0/1 bytes, since any other byte is undefined behaviour for ATen's bool.
  at::Tensor tensor(const std::string& name) const;
  // The raw header JSON text (used for fingerprints).
  const std::string& header_json() const { return header_json_; }
  // The whole mapped file (header included); valid while this object or a tensor from it lives.
  const uint8_t* mapped_data() const;
  size_t mapped_size() const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::string header_json_;
  uint64_t data_offset_ = 0;
};

// A Hugging Face checkpoint directory: shards listed by `model.safetensors.index.json`
// ({"weight_map": {tensor: file}}) when that index exists, otherwise one `model.safetensors`;
// anything else (say a lone `pytorch_model.safetensors`) is an error that lists what was found.
// Missing shards, a tensor stored in two shards, or index entries pointing at a shard that lacks
// the tensor are clear errors. Tensors present in a shard but missing from the index are still
// accessible (some Hugging Face uploads have such indexes), as long as no other shard has them.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;  // zero-copy CPU view
  const std::string& file_of(const std::string& name) const;  // path of the shard holding it
  const std::vector<SafeTensorsFile>& files() const { return files_; }  // sorted by path
  // Stable hash of all shard headers: 16 hex digits of FNV-1a 64 over the header texts, sorted,
  // so it does not depend on shard file names. Identifies these weights without reading the data
  // (not cryptographic: it guards against mix-ups, not against forgery).
  std::string fingerprint() const;

 private:
  std::string dir_;
  std::vector<SafeTensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

// Writes tensors (any device, contiguous copies are made on CPU) with string metadata.
// Supported dtypes: float64/32/16, bfloat16, int64/32/16/8, uint8, bool. The header is padded with
// spaces to a multiple of 8 bytes; data is packed in the given order with no padding, so a tensor
// after an odd-sized one may be unaligned (the reader then copies it). Writes to `path + ".tmp"`,
// fsyncs and renames, so a crash never leaves a half-written file under `path`. Duplicate names,
// the reserved name "__metadata__" and unsupported dtypes are errors.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace kvprime
