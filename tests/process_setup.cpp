// Test processes hand out memory as the cnnviz executable does (core/memory.h): without it, every
// forward pass of an in-process test page-faults its freed tensors back in.
#include <gtest/gtest.h>

#include "cnnviz/core/memory.h"

namespace {

class KeepFreedMemoryEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { cnnviz::KeepFreedMemory(); }
};

const ::testing::Environment* const kKeepFreedMemory =
    ::testing::AddGlobalTestEnvironment(new KeepFreedMemoryEnvironment);

}  // namespace
