#include "cnnviz/io/npy.h"

#include <ATen/ATen.h>

#include <string>

#include "cnnviz/io/atomic_file.h"

namespace cnnviz {

void WriteNpy(const std::string& path, const at::Tensor& array) {
  const at::Tensor data = array.detach().to(at::kCPU, at::kFloat).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < data.dim(); ++i) shape += (i ? ", " : "") + std::to_string(data.size(i));
  if (data.dim() == 1) shape += ",";  // a Python one-tuple
  shape += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes.push_back(static_cast<char>(header.size() & 0xff));
  bytes.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(data.data_ptr<float>()), data.numel() * sizeof(float));
  WriteFileAtomic(path, bytes);
}

}  // namespace cnnviz
