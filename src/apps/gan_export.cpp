#include "gan/cli.h"

int main(int argc, char** argv) { return gan::export_main(argc, argv); }
