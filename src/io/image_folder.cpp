#include "cnnviz/io/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace fs = std::filesystem;

std::vector<std::string> ListImages(const std::string& folder) {
  std::error_code ec;
  if (fs::exists(folder, ec) && !fs::is_directory(folder, ec)) {
    throw InputError("image folder '" + folder + "' is a file, not a folder");
  }
  if (!fs::is_directory(folder, ec)) throw InputError("image folder '" + folder + "' does not exist");
  std::vector<std::string> images;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file(ec)) continue;
    std::string extension = it->path().extension().string();
    std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
    if (extension == ".jpg" || extension == ".jpeg" || extension == ".png" || extension == ".bmp") {
      images.push_back(it->path().string());
    }
  }
  if (images.empty()) throw InputError("image folder '" + folder + "' holds no .jpg/.png/.bmp images");
  std::sort(images.begin(), images.end());
  return images;
}

}  // namespace cnnviz
