// Transformation robustness (Lucid's optvis/transform.py): (config) => (images, rng) => (randomly
// transformed images). One random draw per step is shared by the whole batch, so a batch element sees
// the same transformations whether it is optimized alone or with others.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

namespace cnnviz {

using Rng = std::mt19937_64;
using Transform = std::function<at::Tensor(const at::Tensor& images, Rng& rng)>;

// Pads every side by `pixels` with a constant value (Lucid: 0.5).
Transform Pad(int64_t pixels, double value = 0.5);
// Random crop that removes up to `pixels` rows and columns (Lucid's jitter(d)).
Transform Jitter(int64_t pixels);
// Bilinear resize by a factor drawn uniformly from `scales`.
Transform RandomScale(std::vector<double> scales);
// Bilinear rotation by an angle in degrees drawn uniformly from `degrees`; outside is filled with 0.
Transform RandomRotate(std::vector<double> degrees);
// Applies `transforms` in order.
Transform Compose(std::vector<Transform> transforms);

// Lucid's standard_transforms: pad(12), jitter(8), random_scale(0.9..1.1 in 0.02 steps),
// random_rotate(-10..10 degrees, 0 five times more likely), jitter(4).
Transform StandardTransforms();

// The transform registry. `--transforms` text is a preset ("standard", "none") or kinds joined by commas,
// each "name" or "name:argument", applied in order: "pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4".
// Adding a transform is one function above and one entry in the registry (transform.cpp); the CLI takes
// its names and --help text from here.
struct TransformKind {
  std::string name;
  std::string usage;        // e.g. "jitter:N"
  std::string description;  // one line
  // Builds the transform from the text after "name:" ("" when none); throws UsageError when it is bad.
  std::function<Transform(const std::string& argument)> make;
};
// Every registered kind and preset, in registration order.
const std::vector<TransformKind>& TransformRegistry();
// Parses `text` as above. Throws UsageError naming the bad piece and the registered names.
Transform ParseTransforms(const std::string& text);
// One line per registered kind: usage and description (for --help).
std::string TransformsHelp();

}  // namespace cnnviz
