// Pixel-labelled datasets (Broden and datasets in its layout), as network dissection sees them.
// Interface in cnnviz::core; the Broden reader lives in cnnviz::io (cnnviz/io/broden.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "cnnviz/data/image_source.h"

namespace cnnviz {

struct ConceptLabel {
  int64_t number = 0;        // global label number, 1..N
  std::string name;          // e.g. "red-c", "circle"
  int64_t category = -1;     // primary category (index into categories()), -1 when in none of them:
                             // see SegmentationSource::primary_rule()
};

// The labels of one image, by category (index into categories()).
struct Segmentation {
  int64_t height = 0, width = 0;  // segmentation size (sh, sw)
  // Pixel-level labels: per category, label maps [maps, height, width] int64 (0 = unlabelled),
  // undefined when the image has none in that category.
  std::vector<at::Tensor> pixel;
  // Image-level labels: per category, global label numbers that cover the whole image.
  std::vector<std::vector<int64_t>> image;
  // True when the image carries any label of that category.
  bool Has(size_t category) const { return pixel[category].defined() || !image[category].empty(); }
};

class SegmentationSource : public ImageSource {
 public:
  virtual const std::vector<std::string>& categories() const = 0;
  // Indexed by label number; entry 0 is the unlabelled placeholder.
  virtual const std::vector<ConceptLabel>& labels() const = 0;
  // The labels of image `index`. Throws InputError when a mask is missing, undecodable or of the wrong size.
  virtual Segmentation LoadSegmentation(size_t index) const = 0;
  // Images of the index left out because they carry no label of the chosen categories.
  virtual size_t unlabelled_images() const { return 0; }
  // How each label's primary category was chosen, in words (for reports).
  virtual const std::string& primary_rule() const {
    static const std::string kGiven = "given by the source";
    return kGiven;
  }
};

}  // namespace cnnviz
