// Image folders: every .jpg/.jpeg/.png/.bmp file under a folder, recursively, in sorted order.
#pragma once

#include <string>
#include <vector>

namespace cnnviz {

// Throws InputError when `folder` is missing or holds no images.
std::vector<std::string> ListImages(const std::string& folder);

}  // namespace cnnviz
