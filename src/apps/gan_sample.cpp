#include "gan/cli.h"

int main(int argc, char** argv) { return gan::sample_main(argc, argv); }
