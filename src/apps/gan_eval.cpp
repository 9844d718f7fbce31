#include "gan/cli.h"

int main(int argc, char** argv) { return gan::eval_main(argc, argv); }
