#include "gan/data_tool.h"

int main(int argc, char** argv) { return gan::data_main(argc, argv); }
