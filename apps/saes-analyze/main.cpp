#include "common/cli.h"
int main() { return 0; }
