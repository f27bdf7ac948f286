// Loops on plain float arrays for the CPU ops of views that take gradients (private header; no LibTorch
// here, so it compiles fast and the compiler sees the loops whole). See src/model/relu_rules.h for the ops.
//
// The input gradient of a convolution with few input channels: oneDNN computes this gradient as a transposed convolution whose output has only the image's 3
// channels, and runs it at a fifth of the forward's speed: 1.91 ms against 0.38 ms for the bundled
// model's conv1 (3->16, 3x3) on 4 images of 140x140, and 8.05 ms against 1.42 ms for resnet18's conv1
// (3->64, 7x7, stride 2), 1 thread. The loop below gathers, for each input pixel, the output positions
// its taps reach and sums them over the output channels, which sit side by side in channels-last maps.
#pragma once

#include <cstdint>

namespace cnnviz::detail {

struct ConvShape {
  int64_t batch = 0;
  int64_t in_channels = 0, height = 0, width = 0;          // the input's
  int64_t out_channels = 0, out_height = 0, out_width = 0;  // the output's
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

// Whether ConvInputGradient handles this shape: 1 or 3 input channels, 16, 32, 64 or 128 output
// channels, kernels up to 16 rows. Dilation 1 and one group are the caller's to check.
bool ConvInputGradientSupported(const ConvShape& shape);

// grad_in [batch, height, width, in_channels] (channels-last) of a dilation-1, one-group convolution, from
// grad_out [batch, out_height, out_width, out_channels] (channels-last) and the weight transposed to
// [kernel_h, kernel_w, in_channels, out_channels]. Images [begin, end) only, so callers can split the batch.
// Returns false, writing nothing, when the shape is not supported.
bool ConvInputGradient(const ConvShape& shape, const float* grad_out, const float* weight_t, float* grad_in,
                       int64_t begin, int64_t end);

// ReLU followed by 2x2 max pooling with stride 2 (floor mode), on channels-last maps: x [images, height,
// width, channels] -> out [images, height / 2, width / 2, channels]. The values equal ATen's relu then
// max_pool2d exactly (relu commutes with max). Images [begin, end).
void ReluMaxPool2x2(const float* x, int64_t height, int64_t width, int64_t channels, float* out,
                    int64_t begin, int64_t end);

// Its input gradient, from x, out and grad_out (out's shape): each window's gradient goes to the position
// ATen's max_pool2d picks (the first maximum in row-major order, or the last NaN), if the window's
// maximum is above 0 (or NaN), as relu's backward has it; rows and columns floor mode drops get 0.
void ReluMaxPool2x2Backward(const float* x, const float* out, const float* grad_out, int64_t height, int64_t width,
                            int64_t channels, float* grad_in, int64_t begin, int64_t end);

// A convolution that computes one output channel per image: channel select[i] of image i, with that
// channel's weights and bias gathered beforehand. x [images, height, width, channels] (channels-last),
// weights [images, kernel_h, kernel_w, channels] (each image's channel, transposed), bias [images] or
// null, out [images, out_height, out_width]; shape.out_channels is ignored. Dilation 1, one group.
// Images [begin, end).
void SelectedConv(const ConvShape& shape, const float* x, const float* weights, const float* bias, float* out,
                  int64_t begin, int64_t end);

// Its input gradient: grad_in [images, height, width, channels] (channels-last) from grad_out [images,
// out_height, out_width]. Images [begin, end).
void SelectedConvInputGradient(const ConvShape& shape, const float* grad_out, const float* weights,
                               float* grad_in, int64_t begin, int64_t end);

}  // namespace cnnviz::detail
