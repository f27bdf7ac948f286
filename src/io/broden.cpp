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

// NetDissect-Lite's default categories (its settings.py): Broden's six without material.
constexpr const char* kNetDissectLiteCategories[] = {"object", "part", "scene", "texture", "color"};

// The category names of category.csv in its order; empty when the file does not exist.
std::vector<std::string> CategoryOrder(const fs::path& path);

bool IsInteger(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::vector<std::string> CategoryOrder(const fs::path& path) {
  std::vector<std::string> names;
  if (!fs::exists(path)) return names;
  const Table table = ReadTable(path);
  const size_t name = table.Column("name");
  for (const auto& cells : table.rows) names.push_back(cells[name]);
  return names;
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
    // --categories ndl: NetDissect-Lite's default set (settings.py CATAGORIES: every Broden category but
    // material), those of them the dataset has.
    std::vector<std::string> wanted = options.categories;
    if (wanted == std::vector<std::string>{"ndl"}) {
      wanted.clear();
      for (const char* name : kNetDissectLiteCategories) {
        if (index.columns.count(name)) wanted.emplace_back(name);
      }
    }
    // Categories in category.csv's order where it exists (NetDissect-Lite's order, which breaks ties;
    // by default only those it lists, as there), else index.csv's; a category asked for by name that
    // category.csv does not list comes after those it lists.
    const std::vector<std::string> listed = CategoryOrder(root / "category.csv");
    std::vector<std::pair<std::string, size_t>> category_columns;
    for (const auto& [name, column] : index.columns) {
      if (std::find(std::begin(kFixed), std::end(kFixed), name) != std::end(kFixed)) continue;
      if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), name) == wanted.end()) continue;
      if (wanted.empty() && !listed.empty() && std::find(listed.begin(), listed.end(), name) == listed.end()) continue;
      category_columns.emplace_back(name, column);
    }
    for (const auto& name : wanted) {
      if (!index.columns.count(name)) {
        throw InputError("'" + index.path + "' has no category '" + name + "' (--categories)");
      }
    }
    auto rank = [&](const std::pair<std::string, size_t>& entry) {
      const auto it = std::find(listed.begin(), listed.end(), entry.first);
      return std::make_pair(static_cast<size_t>(it - listed.begin()), entry.second);
    };
    std::sort(category_columns.begin(), category_columns.end(),
              [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
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
      // Segmentation sides: 1 to 16384 pixels (Broden's are 112-192).
      for (const size_t column : {sh, sw}) {
        const std::string& text = cells[column];
        if (!IsInteger(text) || text.size() > 5 || std::stoll(text) < 1 || std::stoll(text) > 16384) {
          throw InputError("'" + index.path + "' line " + std::to_string(line) + ": segmentation size sh,sw = " +
                           cells[sh] + "," + cells[sw] + " is not two integers from 1 to 16384");
        }
      }
      row.seg_height = std::stoll(cells[sh]);
      row.seg_width = std::stoll(cells[sw]);
      for (const auto& [name, column] : category_columns) {
        row.masks.emplace_back();
        row.image_labels.emplace_back();
        if (cells[column].empty()) continue;
        for (const auto& entry : Split(cells[column], ';')) {
          if (entry.empty()) continue;
          if (IsInteger(entry)) {
            const int64_t number = entry.size() > 9 ? -1 : std::stoll(entry);
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
      // As NetDissect-Lite (index_has_any_data): an image without labels in the chosen categories is not
      // part of the dataset, for thresholds too.
      const bool labelled = std::any_of(row.masks.begin(), row.masks.end(), [](const auto& m) { return !m.empty(); }) ||
                            std::any_of(row.image_labels.begin(), row.image_labels.end(),
                                        [](const auto& l) { return !l.empty(); });
      if (!labelled) {
        ++unlabelled_;
        continue;
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
  size_t unlabelled_images() const override { return unlabelled_; }
  const std::string& primary_rule() const override { return primary_rule_; }

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
    for (const auto& cells : table.rows) largest = std::max(largest, LabelNumber(table, cells[number]));
    labels_.resize(largest + 1);
    labels_[0].name = "-";
    static const std::regex kCount(R"(([A-Za-z_]+)\((\d+)\))");
    for (const auto& cells : table.rows) {
      ConceptLabel& label = labels_[LabelNumber(table, cells[number])];
      label.number = LabelNumber(table, cells[number]);
      label.name = cells[name];
      for (const auto& part : Split(cells[category], ';')) {
        std::smatch match;
        if (!std::regex_match(part, match, kCount)) continue;
        counts_[label.number][match[1].str()] = std::strtod(match[2].str().c_str(), nullptr);
      }
    }
  }

  // A label's primary category, as NetDissect-Lite's primary_categories_per_index: the chosen category
  // with the largest coverage of the label in c_<category>.csv (0 where the label is absent), ties going
  // to the later category. Without c_<category>.csv files, the label.csv counts stand in for coverage.
  // A label absent from every chosen category has none (-1) and is never scored.
  void AssignPrimaryCategories() {
    std::vector<std::map<int64_t, double>> weight(categories_.size());
    bool coverage = true;
    for (size_t c = 0; c < categories_.size() && coverage; ++c) {
      const fs::path path = root_ / ("c_" + categories_[c] + ".csv");
      if (!fs::exists(path)) {
        coverage = false;
        break;
      }
      const Table table = ReadTable(path);
      const size_t number = table.Column("number"), column = table.Column("coverage");
      for (const auto& cells : table.rows) {
        char* end = nullptr;
        const double value = std::strtod(cells[column].c_str(), &end);
        if (cells[column].empty() || *end != '\0' || !std::isfinite(value)) {
          throw InputError("'" + table.path + "': coverage '" + cells[column] + "' is not a number");
        }
        weight[c][LabelNumber(table, cells[number])] = value;
      }
    }
    if (!coverage) {
      for (auto& map : weight) map.clear();
      for (const auto& [label, per_category] : counts_) {
        for (size_t c = 0; c < categories_.size(); ++c) {
          const auto it = per_category.find(categories_[c]);
          if (it != per_category.end()) weight[c][label] = it->second;
        }
      }
    }
    primary_rule_ = coverage ? "the chosen category with the largest coverage in c_<category>.csv, ties to the "
                               "later category (NetDissect-Lite)"
                             : "the chosen category with the largest count in label.csv (no c_<category>.csv "
                               "files), ties to the later category";
    for (auto& label : labels_) {
      if (label.number <= 0) continue;
      double best = -1;
      label.category = -1;
      bool present = false;
      for (size_t c = 0; c < categories_.size(); ++c) present = present || weight[c].count(label.number);
      if (!present) continue;
      for (size_t c = 0; c < categories_.size(); ++c) {
        const auto it = weight[c].find(label.number);
        const double value = it == weight[c].end() ? 0.0 : it->second;
        if (value >= best) {
          best = value;
          label.category = static_cast<int64_t>(c);
        }
      }
    }
  }

  // A label number of a CSV file: a positive integer that fits.
  static int64_t LabelNumber(const Table& table, const std::string& text) {
    if (!IsInteger(text) || text.size() > 9) {
      throw InputError("'" + table.path + "': label number '" + text + "' is not an integer from 1 to 999999999");
    }
    return std::stoll(text);
  }

  fs::path root_;
  std::vector<std::string> categories_;
  std::vector<ConceptLabel> labels_;
  std::map<int64_t, std::map<std::string, double>> counts_;  // label.csv: label -> category -> count
  std::string primary_rule_;
  size_t unlabelled_ = 0;
  std::vector<Row> rows_;
};

}  // namespace

std::unique_ptr<SegmentationSource> OpenBroden(const std::string& root, const BrodenOptions& options) {
  std::error_code ec;
  if (fs::exists(root, ec) && !fs::is_directory(root, ec)) {
    throw InputError("dataset '" + root + "' is a file; --dataset takes a folder");
  }
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
