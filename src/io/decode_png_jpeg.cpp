// DecodePngJpeg (DecodeRgb8 when there is no OpenCV): PNG through libpng's simplified API, JPEG through
// libjpeg(-turbo). The format is read from the file's first bytes, not its name.
#include <ATen/ATen.h>
#include <jpeglib.h>
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "cnnviz/core/error.h"
#include "decode.h"

namespace cnnviz::io_detail {
namespace {

using File = std::unique_ptr<FILE, int (*)(FILE*)>;

at::Tensor DecodePng(const std::string& path, const std::string& what) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    throw InputError(what + " '" + path + "' cannot be decoded (" + image.message + ")");
  }
  image.format = PNG_FORMAT_RGB;
  at::Tensor out = at::empty({static_cast<int64_t>(image.height), static_cast<int64_t>(image.width), 3}, at::kByte);
  if (!png_image_finish_read(&image, nullptr, out.data_ptr<uint8_t>(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw InputError(what + " '" + path + "' cannot be decoded (" + message + ")");
  }
  return out;
}

struct JpegError {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void OnJpegError(j_common_ptr info) {
  auto* error = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, error->message);
  std::longjmp(error->jump, 1);
}

// libjpeg reports errors by longjmp: nothing with a destructor may live between setjmp and the calls.
bool DecodeJpegInto(FILE* file, at::Tensor* out, JpegError* error) {
  jpeg_decompress_struct info;
  info.err = jpeg_std_error(&error->manager);
  error->manager.error_exit = OnJpegError;
  if (setjmp(error->jump)) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_stdio_src(&info, file);
  jpeg_read_header(&info, TRUE);
  info.out_color_space = JCS_RGB;
  jpeg_start_decompress(&info);
  *out = at::empty({static_cast<int64_t>(info.output_height), static_cast<int64_t>(info.output_width), 3}, at::kByte);
  uint8_t* data = out->data_ptr<uint8_t>();
  const size_t stride = static_cast<size_t>(info.output_width) * 3;
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = data + stride * info.output_scanline;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return true;
}

at::Tensor DecodeJpeg(FILE* file, const std::string& path, const std::string& what) {
  at::Tensor out;
  JpegError error;
  if (!DecodeJpegInto(file, &out, &error)) {
    throw InputError(what + " '" + path + "' cannot be decoded (" + error.message + ")");
  }
  return out;
}

}  // namespace

at::Tensor DecodePngJpeg(const std::string& path, const std::string& what) {
  if (!std::filesystem::exists(path)) throw InputError(what + " '" + path + "' is missing");
  File file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw InputError(what + " '" + path + "' cannot be opened");
  unsigned char magic[8] = {0};
  const size_t read = std::fread(magic, 1, sizeof(magic), file.get());
  if (read == 8 && png_sig_cmp(magic, 0, 8) == 0) return DecodePng(path, what);
  if (read >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) {
    std::rewind(file.get());
    return DecodeJpeg(file.get(), path, what);
  }
  throw InputError(what + " '" + path + "' cannot be decoded (neither PNG nor JPEG)");
}

#ifndef CNNVIZ_HAVE_OPENCV
at::Tensor DecodeRgb8(const std::string& path, const std::string& what) { return DecodePngJpeg(path, what); }
#endif

}  // namespace cnnviz::io_detail
