// DecodePngJpeg (DecodeRgb8 when there is no OpenCV): PNG through libpng's simplified API, JPEG through
// libjpeg(-turbo). The format is read from the file's first bytes, not its name. EncodePng: PNG files
// through libpng's write API.
#include <ATen/ATen.h>
#include <jpeglib.h>
#include <png.h>

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

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
  CheckImageFile(path, what, what == "mask");
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

namespace {

void AppendBytes(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}

void NoFlush(png_structp) {}

// libpng reports errors by longjmp: nothing with a destructor may live between setjmp and the calls.
bool EncodePngInto(const uint8_t* pixels, int height, int width, int channels, std::vector<uint8_t>* out) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, out, &AppendBytes, &NoFlush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // One filter and Huffman coding only (zlib's Z_HUFFMAN_ONLY = 2): on dissection's figures 2.3x faster
  // than libpng's adaptive filters with zlib level 1, and the files are no larger.
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
  png_set_compression_level(png, 1);
  png_set_compression_strategy(png, 2);
  png_write_info(png, info);
  for (int row = 0; row < height; ++row) {
    png_write_row(png, pixels + static_cast<size_t>(row) * static_cast<size_t>(width) * static_cast<size_t>(channels));
  }
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

std::vector<uint8_t> EncodePng(const at::Tensor& hwc) {
  const at::Tensor pixels = hwc.contiguous();
  std::vector<uint8_t> out;
  if (!EncodePngInto(pixels.data_ptr<uint8_t>(), static_cast<int>(pixels.size(0)), static_cast<int>(pixels.size(1)),
                     static_cast<int>(pixels.size(2)), &out)) {
    throw InputError("cannot encode a " + std::to_string(pixels.size(1)) + "x" + std::to_string(pixels.size(0)) +
                     " PNG");
  }
  return out;
}

#ifndef CNNVIZ_HAVE_OPENCV
at::Tensor DecodeRgb8(const std::string& path, const std::string& what) { return DecodePngJpeg(path, what); }
#endif

}  // namespace cnnviz::io_detail
