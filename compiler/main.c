// main.c: the `nnc` executable; everything is in driver.c (ABI.md §1).
#include <stdio.h>

#include "driver.h"

int main(int argc, char **argv) {
    return nn_driver(argc, argv, stdout, stderr);
}
