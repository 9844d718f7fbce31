#include "gan/cli.h"

int main(int argc, char** argv) { return gan::report_main(argc, argv); }
