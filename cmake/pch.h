// Curated precompiled header for torch TUs (style.md §B11.4): never <torch/torch.h>.
#pragma once
#include <ATen/core/Tensor.h>
#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
