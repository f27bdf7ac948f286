#include "cnnviz/io/npy.h"

#include <ATen/ATen.h>

#include <string>

#include "cnnviz/io/atomic_file.h"

namespace cnnviz {

void WriteNpy(const std::string& path, const at::Tensor& array) {
  // Integer tensors keep exact counts as int64, double stays double, everything else is float32.
  const bool integral = !at::isFloatingType(array.scalar_type()) && array.scalar_type() != at::kBool;
  const at::ScalarType type = integral ? at::kLong : (array.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const char* descr = integral ? "<i8" : (type == at::kDouble ? "<f8" : "<f4");
  const at::Tensor data = array.detach().to(at::kCPU, type).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < data.dim(); ++i) shape += (i ? ", " : "") + std::to_string(data.size(i));
  if (data.dim() == 1) shape += ",";  // a Python one-tuple
  shape += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes.push_back(static_cast<char>(header.size() & 0xff));
  bytes.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  bytes += header;
  bytes.append(static_cast<const char*>(data.data_ptr()), data.numel() * data.element_size());
  WriteFileAtomic(path, bytes);
}

}  // namespace cnnviz
