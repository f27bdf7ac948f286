// Image datasets on disk: a plain folder of images (recursive) or the images of a Broden-format root.
#pragma once

#include <memory>
#include <string>

#include "cnnviz/data/image_source.h"

namespace cnnviz {

// `path` holding index.csv is read as a Broden root (column "image", relative to images/); any other
// folder is scanned recursively for .jpg/.jpeg/.png/.bmp. Throws InputError when missing or empty.
std::unique_ptr<ImageSource> OpenImageDataset(const std::string& path);

// A list of image files.
std::unique_ptr<ImageSource> ImageFiles(std::vector<std::string> paths);

}  // namespace cnnviz
