#include "gan/cli.h"

int main(int argc, char** argv) { return gan::train_main(argc, argv); }
