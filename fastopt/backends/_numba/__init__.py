"""numba machinery of the kernels: the disk cache's locators (``cache``), serial and parallel twins
(``compile``), kernel templates specialized per algorithm (``specialize``) and the host side of
their arguments (``launch``)."""
