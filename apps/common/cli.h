// Placeholder; replaced by the shared CLI layer.
#pragma once
