#include "cnnviz/io/broden.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "cnnviz/core/error.h"
#include "cnnviz/io/image.h"
#include "decode.h"

namespace cnnviz {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> Split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, separator);) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.emplace_back();
  return parts;
}

// A CSV file whose cells hold no commas or quotes (true of Broden's index.csv; label.csv quotes nothing
// we read but may quote synonyms, which are handled by the quote-aware splitter below).
std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      cells.push_back(cell);
      cell.clear();
    } else {
      cell.push_back(c);
    }
  }
  cells.push_back(cell);
  return cells;
}

struct Table {
  std::string path;
  std::map<std::string, size_t> columns;
  std::vector<std::vector<std::string>> rows;

  size_t Column(const std::string& name) const {
    auto it = columns.find(name);
    if (it == columns.end()) throw InputError("'" + path + "' has no column '" + name + "'");
    return it->second;
  }
};

Table ReadTable(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError("'" + path.string() + "' is missing: not a Broden dataset root?");
  Table table;
  table.path = path.string();
  std::string line;
  if (!std::getline(in, line)) throw InputError("'" + path.string() + "' is empty");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const auto header = SplitCsv(line);
  for (size_t i = 0; i < header.size(); ++i) table.columns[header[i]] = i;
  size_t number = 1;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto cells = SplitCsv(line);
    if (cells.size() < header.size()) cells.resize(header.size());  // trailing empty cells
    if (cells.size() > header.size()) {
      throw InputError("'" + path.string() + "' line " + std::to_string(number) + " has " +
                       std::to_string(cells.size()) + " cells, the header " + std::to_string(header.size()));
    }
    table.rows.push_back(std::move(cells));
  }
  return table;
}

bool IsInteger(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

struct Row {
  std::string image;
  int64_t seg_height = 0, seg_width = 0;
  std::vector<std::vector<std::string>> masks;     // per category: PNG paths
  std::vector<std::vector<int64_t>> image_labels;  // per category
};

class Broden : public SegmentationSource {
 public:
  Broden(const fs::path& root, const BrodenOptions& options) : root_(root) {
    ReadLabels();
    const Table index = ReadTable(root / "index.csv");
    static const char* kFixed[] = {"image", "split", "ih", "iw", "sh", "sw"};
    for (const char* name : kFixed) index.Column(name);
    std::vector<std::pair<std::string, size_t>> category_columns;
    for (const auto& [name, column] : index.columns) {
      if (std::find(std::begin(kFixed), std::end(kFixed), name) != std::end(kFixed)) continue;
      if (!options.categories.empty() &&
          std::find(options.categories.begin(), options.categories.end(), name) == options.categories.end()) {
        continue;
      }
      category_columns.emplace_back(name, column);
    }
    for (const auto& wanted : options.categories) {
      if (!index.columns.count(wanted)) {
        throw InputError("'" + index.path + "' has no category '" + wanted + "' (--categories)");
      }
    }
    std::sort(category_columns.begin(), category_columns.end(),
              [](const auto& a, const auto& b) { return a.second < b.second; });
    for (const auto& [name, column] : category_columns) categories_.push_back(name);
    AssignPrimaryCategories();
    if (options.split != "all" && options.split != "train" && options.split != "val") {
      throw UsageError("--split must be train, val or all, not '" + options.split + "'");
    }
    const size_t split = index.Column("split"), image = index.Column("image");
    const size_t sh = index.Column("sh"), sw = index.Column("sw");
    size_t line = 1;
    for (const auto& cells : index.rows) {
      ++line;
      if (options.split != "all" && cells[split] != options.split) continue;
      if (options.max_images && rows_.size() >= options.max_images) break;
      Row row;
      row.image = cells[image];
      try {
        row.seg_height = std::stoll(cells[sh]);
        row.seg_width = std::stoll(cells[sw]);
      } catch (const std::exception&) {
        throw InputError("'" + index.path + "' line " + std::to_string(line) + ": sh/sw are not numbers");
      }
      for (const auto& [name, column] : category_columns) {
        row.masks.emplace_back();
        row.image_labels.emplace_back();
        if (cells[column].empty()) continue;
        for (const auto& entry : Split(cells[column], ';')) {
          if (entry.empty()) continue;
          if (IsInteger(entry)) {
            const int64_t number = std::stoll(entry);
            if (number <= 0 || number >= static_cast<int64_t>(labels_.size())) {
              throw InputError("'" + index.path + "' line " + std::to_string(line) + ": label " + entry +
                               " is not in label.csv");
            }
            row.image_labels.back().push_back(number);
          } else {
            row.masks.back().push_back(entry);
          }
        }
      }
      rows_.push_back(std::move(row));
    }
    if (rows_.empty()) throw InputError("Broden dataset '" + root.string() + "' has no images in split '" + options.split + "'");
  }

  size_t size() const override { return rows_.size(); }
  std::string Name(size_t index) const override { return (root_ / "images" / rows_.at(index).image).string(); }
  at::Tensor Load(size_t index) const override { return ReadImage(Name(index)); }
  const std::vector<std::string>& categories() const override { return categories_; }
  const std::vector<ConceptLabel>& labels() const override { return labels_; }

  Segmentation LoadSegmentation(size_t index) const override {
    const Row& row = rows_.at(index);
    Segmentation out;
    out.height = row.seg_height;
    out.width = row.seg_width;
    for (size_t c = 0; c < categories_.size(); ++c) {
      out.image.push_back(row.image_labels[c]);
      if (row.masks[c].empty()) {
        out.pixel.emplace_back();
        continue;
      }
      std::vector<at::Tensor> maps;
      for (const auto& mask : row.masks[c]) maps.push_back(ReadLabelMap((root_ / "images" / mask).string(), row));
      out.pixel.push_back(at::stack(maps));
    }
    return out;
  }

 private:
  at::Tensor ReadLabelMap(const std::string& path, const Row& row) const {
    const at::Tensor rgb = io_detail::DecodeRgb8(path, "mask");
    if (rgb.size(0) != row.seg_height || rgb.size(1) != row.seg_width) {
      throw InputError("mask '" + path + "' is " + std::to_string(rgb.size(0)) + "x" + std::to_string(rgb.size(1)) +
                       " but index.csv says " + std::to_string(row.seg_height) + "x" + std::to_string(row.seg_width));
    }
    const at::Tensor pixels = rgb.to(at::kLong);
    return pixels.select(2, 0) + 256 * pixels.select(2, 1);  // label = R + 256 G
  }

  void ReadLabels() {
    const Table table = ReadTable(root_ / "label.csv");
    const size_t number = table.Column("number"), name = table.Column("name"), category = table.Column("category");
    int64_t largest = 0;
    for (const auto& cells : table.rows) {
      if (!IsInteger(cells[number])) throw InputError("'" + table.path + "': label number '" + cells[number] + "'");
      largest = std::max<int64_t>(largest, std::stoll(cells[number]));
    }
    labels_.resize(largest + 1);
    labels_[0].name = "-";
    static const std::regex kCount(R"(([A-Za-z_]+)\((\d+)\))");
    for (const auto& cells : table.rows) {
      ConceptLabel& label = labels_[std::stoll(cells[number])];
      label.number = std::stoll(cells[number]);
      label.name = cells[name];
      int64_t best = -1;
      for (const auto& part : Split(cells[category], ';')) {
        std::smatch match;
        if (!std::regex_match(part, match, kCount)) continue;
        const int64_t count = std::stoll(match[2].str());
        if (count > best) {
          best = count;
          primary_names_[label.number] = match[1].str();
        }
      }
    }
  }

  void AssignPrimaryCategories() {
    for (auto& label : labels_) {
      auto it = primary_names_.find(label.number);
      if (it == primary_names_.end()) continue;
      auto position = std::find(categories_.begin(), categories_.end(), it->second);
      label.category = position == categories_.end() ? -1 : position - categories_.begin();
    }
  }

  fs::path root_;
  std::vector<std::string> categories_;
  std::vector<ConceptLabel> labels_;
  std::map<int64_t, std::string> primary_names_;
  std::vector<Row> rows_;
};

}  // namespace

std::unique_ptr<SegmentationSource> OpenBroden(const std::string& root, const BrodenOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw InputError("dataset folder '" + root + "' does not exist");
  return std::make_unique<Broden>(fs::path(root), options);
}

std::string ResolveBrodenRoot(const std::string& dataset) {
  if (dataset != "broden") return dataset;
  if (const char* env = std::getenv("CNNVIZ_BRODEN")) return env;
  const std::string fallback = "dataset/broden1_224";
  if (fs::exists(fallback)) return fallback;
  throw InputError(
      "--dataset broden: set CNNVIZ_BRODEN to a broden1_224 folder or put it at ./dataset/broden1_224 "
      "(download: http://netdissect.csail.mit.edu/data/broden1_224.zip, ~1 GB); "
      "or generate a small synthetic one with models/make_concepts.py");
}

}  // namespace cnnviz
