// Network dissection: Bau et al., "Network Dissection: Quantifying Interpretability of Deep Visual
// Representations", CVPR 2017, as NetDissect-Lite computes it, with exact thresholds.
//
// Two passes over a pixel-labelled dataset, several layers at once:
//  1. thresholds: T_k is the activation of rank ceil(q * M) from the top among all M values (images x
//     positions) of unit k, kept exactly by a per-unit buffer of the top ceil(q * N * h * w) values
//     (0.5% of the activations at q = 0.005); also each unit's top images;
//  2. tallies: each unit's map is upsampled to the segmentation size (bilinear, align_corners=False, as
//     NetDissect-Lite; the original NetDissect centred it on receptive fields), M_k = map > T_k, and
//     for every label c: I_kc += |M_k & L_c|, G_c += |L_c| (image-level labels are full-image masks;
//     every label map counts, so a label in two maps at one pixel counts twice, as NetDissect-Lite),
//     A_k,cat += |M_k| when M_k covers a pixel labelled with a label of primary category cat or the
//     image has an image-level label of primary category cat (NetDissect-Lite's `tally_cat > 0`).
// IoU_kc = I_kc / (A_k,primary(c) + G_c - I_kc). A unit's label in each category is the label of best
// IoU among those of that primary category (ties: the lower label number); its label overall is the
// best of those (ties: the later category), as NetDissect-Lite's tally(). It is a detector when that
// IoU exceeds the threshold. Options switch to the earlier cnnviz rules (activated area over every
// image with a map of the category, label maps of a category unioned). No activation is stored on
// disk: memory is the
// threshold buffer, O(units x labels) tallies, each unit's maps on its top images, and an optional
// activation cache of fixed size (cache_mb) that spares the second pass the network for the images it
// holds.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "cnnviz/core/precision.h"
#include "cnnviz/data/segmentation_source.h"
#include "cnnviz/methods/dataset_scan.h"
#include "cnnviz/model/probe.h"

namespace cnnviz {

// Which images add a unit's mask |M_k| to a category's activated area A_k,cat.
enum class ActivatedArea {
  kCovered,  // NetDissect-Lite: M_k covers a labelled pixel of primary category cat, or the image has
             // an image-level label of primary category cat (default)
  kPresent,  // the image has any label map or image-level label of category cat (cnnviz before 0.9)
};

struct DissectionOptions {
  // Layers (module paths or aliases). Required.
  std::vector<std::string> layers;
  // Top quantile for the activation threshold. Default 0.005 (T_k = 99.5th percentile).
  double quantile = 0.005;
  // IoU above which a unit counts as a detector. Default 0.04.
  double iou_threshold = 0.04;
  // Images per forward batch. Default 16.
  int64_t batch = 16;
  // Top images kept per unit for figures (with the unit's map on each). Default 4.
  int64_t top_images = 4;
  // Activations of the first pass are kept in memory up to this many MiB, so the second pass does not
  // run the network again for those images; the rest are recomputed. Memory stays bounded whatever
  // the dataset size. 0 disables the cache. Default 256.
  int64_t cache_mb = 256;
  // Threads decoding images and masks ahead of the passes (one batch each); 0 = DecodeThreads' choice:
  // 1 on a CPU, up to 8 on a GPU.
  int64_t decode_threads = 0;
  // Activated-area rule. Default kCovered (NetDissect-Lite).
  ActivatedArea activated_area = ActivatedArea::kCovered;
  // Union the label maps of one category per label, so a label in two maps at one pixel counts once.
  // Default false: every map counts, as NetDissect-Lite.
  bool union_maps = false;
  // Given thresholds, one [K] float tensor per layer (e.g. NetDissect-Lite's quantile.npy): the quantile
  // pass is skipped and the run is one pass over the data. Empty = compute exact thresholds (default).
  // A float64 threshold t is applied as the largest float32 not above it, so `map > t` is unchanged.
  std::vector<at::Tensor> thresholds;
  // Per layer, an optional change of basis B [K, K] applied to the layer's channel vector at every
  // position before anything else (a' = B a): Bau et al.'s rotations of a layer, which ask whether
  // interpretability is axis-aligned. Undefined entries (or an empty vector) change nothing. A layer may
  // be listed more than once, with different bases: the network still runs once per batch.
  std::vector<at::Tensor> bases;
  // The network's forward pass at this precision (autocast; core/precision.h); the maps are float32
  // from there on, so thresholds, tallies and IoUs are computed as in fp32. Default fp32 (exact).
  Precision precision = Precision::kFp32;
  // Throws UsageError for bad values.
  void Check() const;
};

struct LabelScore {
  int64_t label = 0;  // global label number, 0 = none
  double iou = 0;
};

struct UnitDissection {
  int64_t unit = 0;
  float threshold = 0;
  LabelScore best;                         // best label over all categories
  int64_t category = -1;                   // its primary category, -1 when no label
  std::vector<LabelScore> per_category;    // best label in each category
  std::vector<std::pair<int64_t, float>> top_images;  // (image index, max activation), strongest first
};

struct LayerDissection {
  std::string name;
  std::vector<UnitDissection> units;
  // Raw tallies, so other rules can be applied: [K, labels+1], [labels+1], [K, categories] (int64),
  // and the IoU [K, labels+1] (double).
  at::Tensor intersection, label_area, activated_area, iou;
  at::Tensor thresholds;  // [K]
  at::Tensor top_maps;    // [K, top, h, w]: each unit's map on each of its top images
  int64_t detectors = 0;
  std::vector<int64_t> unique_concepts;  // per category
  std::vector<int64_t> detectors_per_category;
};

struct DissectionResult {
  std::vector<LayerDissection> layers;
  size_t images = 0;                                    // images used in both passes
  bool thresholds_given = false;                        // DissectionOptions::thresholds: one pass
  size_t cached_images = 0;                             // images whose second pass reused cached maps
  int64_t cache_bytes = 0;                              // what that cache held
  std::vector<std::pair<size_t, std::string>> skipped;  // images skipped: index, reason
  double threshold_seconds = 0, tally_seconds = 0;
};

// Bau et al.'s partial rotation of a K-unit basis: Q^alpha, Q a random rotation (orthogonal, det +1)
// drawn from `seed` (QR of a Gaussian matrix, signs fixed so the draw is uniform), Q^alpha through Q's
// eigendecomposition (eigenvalues e^{i theta} -> e^{i alpha theta}). alpha = 0 gives the identity exactly,
// 1 gives Q; every Q^alpha is a rotation. [K, K] float64.
at::Tensor InterpolatedRotation(int64_t units, double alpha, uint64_t seed);

// One model of a joint dissection, with its own bases (per DissectionOptions::layers; empty = the
// options' bases). The same probe may appear in several jobs (with other bases): it runs once per batch.
struct DissectionJob {
  const Probe* probe = nullptr;
  std::vector<at::Tensor> bases;
};

class NetworkDissection {
 public:
  explicit NetworkDissection(const Probe& probe) : probe_(probe) {}
  // (pass 1 or 2, images done, images total)
  using Progress = std::function<void(int, size_t, size_t)>;
  // `consumers` read the maps of the pass that runs the network on every image (the first; the only
  // one when thresholds are given): the shared dataset pass (dataset_scan.h).
  DissectionResult Run(const SegmentationSource& source, const DissectionOptions& options,
                       const Progress& progress = nullptr, const std::vector<ScanConsumer*>& consumers = {}) const;

  // The same layers of several models (jobs) in one pass over `source`: each batch is decoded once and
  // run through every distinct model; thresholds and tallies are kept per job (memory: a single model's
  // per-layer state times the number of jobs; the activation cache is shared). The models must take
  // the same input size. One result per job, in order; no consumers, no given thresholds for more than
  // one job.
  static std::vector<DissectionResult> RunModels(const std::vector<DissectionJob>& jobs, const SegmentationSource& source,
                                                 const DissectionOptions& options, const Progress& progress = nullptr);
  // For figures: unit `unit`'s mask on its `rank`-th top image at height x width (its map upsampled
  // bilinearly, then > threshold), from the maps kept in the first pass.
  static at::Tensor TopImageMask(const LayerDissection& layer, int64_t unit, int64_t rank, int64_t height,
                                 int64_t width);

 private:
  const Probe& probe_;
};

}  // namespace cnnviz
