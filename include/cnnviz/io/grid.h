// Labelled image grids: the one picture every method writes (grid.png).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace cnnviz {

// Lays out images [N,3,H,W] in [0,1] row by row, `columns` per row (0 = about square), each with its
// caption underneath on a white strip. Returns [3,H',W'] in [0,1].
at::Tensor MakeGrid(const at::Tensor& images, const std::vector<std::string>& captions, int64_t columns = 0);

}  // namespace cnnviz
