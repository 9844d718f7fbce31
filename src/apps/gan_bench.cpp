#include "gan/bench.h"

int main(int argc, char** argv) { return gan::bench_main(argc, argv); }
