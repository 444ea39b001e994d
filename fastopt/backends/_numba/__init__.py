"""numba machinery of the kernels: the disk cache's locators, serial and parallel twins, and kernel
templates."""
