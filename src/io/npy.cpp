#include "cnnviz/io/npy.h"

#include <ATen/ATen.h>

#include <cstring>
#include <fstream>
#include <map>
#include <limits>
#include <regex>
#include <sstream>
#include <string>

#include "cnnviz/core/error.h"
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

namespace {

// The header's Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
struct NpyHeader {
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
};

NpyHeader ParseHeader(const std::string& header, const std::string& name) {
  auto fail = [&](const std::string& why) -> InputError {
    return InputError(name + " is not a readable .npy file: " + why);
  };
  static const std::regex kDescr(R"('descr'\s*:\s*'([^']*)')");
  static const std::regex kFortran(R"('fortran_order'\s*:\s*(True|False))");
  static const std::regex kShape(R"('shape'\s*:\s*\(([^)]*)\))");
  std::smatch match;
  NpyHeader out;
  if (!std::regex_search(header, match, kDescr)) throw fail("its header has no 'descr'");
  out.descr = match[1].str();
  if (!std::regex_search(header, match, kFortran)) throw fail("its header has no 'fortran_order'");
  out.fortran = match[1].str() == "True";
  if (!std::regex_search(header, match, kShape)) throw fail("its header has no 'shape'");
  std::stringstream dims(match[1].str());
  for (std::string dim; std::getline(dims, dim, ',');) {
    const size_t first = dim.find_first_not_of(" \t"), last = dim.find_last_not_of(" \t");
    if (first == std::string::npos) continue;  // the one-tuple's trailing comma
    dim = dim.substr(first, last - first + 1);
    if (dim.empty() || dim.size() > 12 || dim.find_first_not_of("0123456789") != std::string::npos) {
      throw fail("its shape has the dimension '" + dim + "'");
    }
    out.shape.push_back(std::stoll(dim));
  }
  return out;
}

}  // namespace

at::Tensor ParseNpy(const std::string& bytes, const std::string& name) {
  auto fail = [&](const std::string& why) -> InputError {
    return InputError(name + " is not a readable .npy file: " + why);
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw fail("it does not start with \\x93NUMPY");
  const auto major = static_cast<unsigned char>(bytes[6]);
  size_t header_length = 0, offset = 0;
  if (major == 1) {
    header_length = static_cast<unsigned char>(bytes[8]) | (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw fail("its header is cut short");
    for (int i = 3; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(bytes[8 + i]);
    offset = 12;
  } else {
    throw fail("format version " + std::to_string(major) + " is not 1, 2 or 3");
  }
  if (header_length > bytes.size() - offset) throw fail("its header is cut short");
  const NpyHeader header = ParseHeader(bytes.substr(offset, header_length), name);
  offset += header_length;
  if (header.fortran) throw fail("it is in Fortran order (save a C-ordered array: np.ascontiguousarray)");
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"<f4", at::kFloat}, {"<f8", at::kDouble}, {"<f2", at::kHalf},  {"<i8", at::kLong}, {"<i4", at::kInt},
      {"<i2", at::kShort}, {"|i1", at::kChar},   {"|u1", at::kByte},  {"|b1", at::kBool}};
  const auto type = kTypes.find(header.descr);
  if (type == kTypes.end()) {
    throw fail("its dtype '" + header.descr + "' is not one of <f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 |b1 "
               "(little-endian numbers)");
  }
  const size_t element = c10::elementSize(type->second);
  size_t count = 1;
  for (int64_t dim : header.shape) {
    if (dim != 0 && count > std::numeric_limits<size_t>::max() / 16 / static_cast<size_t>(dim)) {
      throw fail("its shape is too large");
    }
    count *= static_cast<size_t>(dim);
  }
  if (bytes.size() - offset != count * element) {
    throw fail("its shape and dtype need " + std::to_string(count * element) + " bytes of data, the file has " +
               std::to_string(bytes.size() - offset));
  }
  at::Tensor out = at::empty(header.shape, at::TensorOptions().dtype(type->second));
  if (count) std::memcpy(out.data_ptr(), bytes.data() + offset, count * element);
  return out;
}

at::Tensor ReadNpy(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(what + " '" + path + "' cannot be opened");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return ParseNpy(bytes.str(), what + " '" + path + "'");
}

}  // namespace cnnviz
