#include "common/cli.h"
