#include "cnnviz/io/image_sources.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cnnviz/core/error.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/image_folder.h"

namespace cnnviz {
namespace fs = std::filesystem;

namespace {

class FileList : public ImageSource {
 public:
  explicit FileList(std::vector<std::string> paths) : paths_(std::move(paths)) {}
  size_t size() const override { return paths_.size(); }
  std::string Name(size_t index) const override { return paths_.at(index); }
  at::Tensor Load(size_t index) const override { return ReadImage(paths_.at(index)); }

 private:
  std::vector<std::string> paths_;
};

std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream stream(line);
  for (std::string cell; std::getline(stream, cell, ',');) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.emplace_back();
  return cells;
}

std::vector<std::string> BrodenImages(const fs::path& root) {
  std::ifstream in(root / "index.csv");
  if (!in) throw InputError("'" + (root / "index.csv").string() + "' cannot be read");
  std::string line;
  if (!std::getline(in, line)) throw InputError("'" + (root / "index.csv").string() + "' is empty");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const auto header = SplitCsvLine(line);
  const auto column = std::find(header.begin(), header.end(), "image");
  if (column == header.end()) throw InputError("'" + (root / "index.csv").string() + "' has no 'image' column");
  const size_t index = column - header.begin();
  std::vector<std::string> paths;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const auto cells = SplitCsvLine(line);
    if (cells.size() <= index) throw InputError("'" + (root / "index.csv").string() + "': short row '" + line + "'");
    paths.push_back((root / "images" / cells[index]).string());
  }
  if (paths.empty()) throw InputError("Broden dataset '" + root.string() + "' lists no images");
  return paths;
}

}  // namespace

std::unique_ptr<ImageSource> OpenImageDataset(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec) && !fs::is_directory(path, ec)) {
    throw InputError("dataset '" + path + "' is a file; --dataset takes a folder");
  }
  if (!fs::is_directory(path, ec)) throw InputError("dataset folder '" + path + "' does not exist");
  if (fs::exists(fs::path(path) / "index.csv")) return std::make_unique<FileList>(BrodenImages(path));
  return std::make_unique<FileList>(ListImages(path));
}

std::unique_ptr<ImageSource> ImageFiles(std::vector<std::string> paths) {
  return std::make_unique<FileList>(std::move(paths));
}

}  // namespace cnnviz
