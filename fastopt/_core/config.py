"""The tunables of every backend's kernels: parallel thresholds, block, tile and chunk sizes.

Each is defined here once. The numba and CUDA modules read their values from this module; the C
sources define none of theirs: :mod:`fastopt.backends.c.build` passes :data:`C_DEFINES` to the
compiler as ``-D NAME=value`` and the sources stop the build without them, and the extension
reports what it was built with (:func:`fastopt.backends.c.optim.build_config`), which the tests
compare with this module. A change here therefore needs the C extension rebuilt.

None of these values changes a result's bits except :data:`REDUCTION_CHUNK`, which sets the order
of the float64 sums of squares (global norms) and so must be the same for ``cpu`` and ``c`` for
their norms to agree; the others trade speed against speed (start-up cost against parallelism,
cache footprint against loop overhead). The CUDA simulator runs every thread in Python, so it
gets sizes of its own, small enough that the tests' small arrays span several blocks and tiles.

This module imports nothing: ``build.py`` loads it by path when ``fastopt`` is not importable
(``setup.py``'s build).
"""

# ---- Shared by the host backends (cpu and c) --------------------------------------------------

#: Elements per chunk of the sums of squares: chunks are summed in parallel, then the chunk sums
#: in order, so a norm does not depend on the thread count. Sets the bits of every norm (cpu and c
#: must agree); larger chunks mean fewer partial sums but less parallelism for mid-sized arrays.
REDUCTION_CHUNK = 1 << 14
#: Running sums per chunk of the sums of squares: element ``i`` of a chunk starting at ``lo`` is
#: added to sum ``(i - lo) % REDUCTION_LANES``, and the sums are added pairwise at the chunk's end.
#: Also sets the bits (cpu and c must agree). Enough independent sums for the additions to run at
#: memory speed in vector registers (and for numba's loop vectorizer to take the lanes as a loop);
#: a power of two that divides every block size below.
REDUCTION_LANES = 64

# ---- cpu (numba) --------------------------------------------------------------------------------

#: Steps with fewer elements run the serial kernel: below it, waking numba's thread pool costs
#: more than the update.
CPU_PARALLEL_THRESHOLD = 1 << 15
#: Elements per chunk of LAMB's segmented passes (one thread sums a chunk's piece of a tensor):
#: smaller chunks spread a few large tensors over more threads, larger ones keep fewer partial
#: sums. C's LAMB chunks by REDUCTION_CHUNK; equal values keep the two alike.
CPU_LAMB_CHUNK = 1 << 14
#: Elements per block of an update, one vectorized loop; a fused step adds a block's squares
#: right after updating it, while it is in cache. A multiple of REDUCTION_LANES:
#: larger blocks mean less loop overhead until the block falls out of L1.
CPU_BLOCK = 1 << 10
#: Elements per block of a mixed-precision step: the block's gradient and state are decoded into
#: float32 scratch arrays (up to four, 8 KiB each), the float32 element loop runs on them, and the
#: state and model copy are encoded back, each a loop of one format that vectorizes. Larger
#: blocks spread each block's loop set-up over more elements until the arrays leave L1.
CPU_MIXED_BLOCK = 1 << 11
#: Elements per parallel task of a mixed-precision step (a multiple of CPU_MIXED_BLOCK): a task
#: allocates its scratch arrays once for all its blocks.
CPU_MIXED_CHUNK = 1 << 14
#: Dense layers with fewer multiply-adds (batch x fan_in x fan_out) run on one thread.
CPU_MLP_PARALLEL_MACS = 1 << 20
#: Layers with fewer outputs than this (an output layer of 10 classes) accumulate rows for dX and
#: dW instead of taking dot products a few elements long.
CPU_MLP_NARROW = 16
#: The threads' blocks of a product's output: rows by columns (multiples of the 4 x 2 register
#: tile). Larger blocks reuse more of each input row and column; smaller ones balance the threads.
CPU_MLP_BLOCK_ROWS = 16
CPU_MLP_BLOCK_COLS = 64

# ---- c (OpenMP) ---------------------------------------------------------------------------------

#: Steps with fewer elements run on the calling thread: below it, starting the OpenMP team costs
#: more than the update.
C_PARALLEL_THRESHOLD = 1 << 15
#: Reduction chunks per parallel region (their partial sums are an array on the stack): more
#: means fewer regions for huge arrays and more stack.
C_REDUCTION_BATCH = 1024
#: Elements per block of a fused step's update, each followed by the sum of its gradient's squares
#: while in cache; a multiple of REDUCTION_LANES, as CPU_BLOCK.
C_NORM_BLOCK = 1 << 10
#: Elements per block of a mixed-precision step: its decoded float32 buffers (up to four) live on
#: the stack and in L1. Below C_PARALLEL_THRESHOLD, so the float32 step runs a block on one thread.
C_MIXED_BLOCK = 512
#: Elements per block of 8-bit optimizer state (each block has one float32 absmax), on every
#: backend: Dettmers et al. (2022)'s and bitsandbytes' block size.
QUANT8_BLOCK = 256
#: Rows of the dense layers' micro-kernel tile. Not free: the micro-kernels are written for 6 rows
#: (12 vector accumulators), and csrc/mlp.c stops the build on another value.
C_MLP_MR = 6
#: Dense-layer products with fewer multiply-adds run on the calling thread.
C_MLP_PARALLEL_MACS = 1 << 20
#: A panel of B (depth x NR columns) up to this many bytes is read in place; a larger one is
#: packed first: a copy per panel, against rows far apart once the panel outgrows half of L1.
C_MLP_PANEL_IN_PLACE_BYTES = 16384
#: Elementwise passes of the dense layers (dZ) with fewer elements run on the calling thread.
C_MLP_PARALLEL_ELEMENTS = 1 << 15
#: A parallel product hands out at least this many tasks per thread: more balance the threads
#: better (a preempted thread costs less), fewer re-read fewer panels.
C_MLP_TASKS_PER_THREAD = 4
#: The landscape kernel's tile: rows of a block (the hidden layer is laid out rows-last, one
#: vector of rows per hidden unit) by classes (vector accumulators per row vector, the output
#: weights broadcast). 16 x 4 holds 64 accumulators, 8 to 16 vector registers; the classes are
#: padded with zero weights to a multiple of the class block.
C_LANDSCAPE_ROWS = 16
C_LANDSCAPE_CLASSES = 4

#: The C tunables by the macro names the sources read (``-D NAME=value``).
C_DEFINES = {
    "FASTOPT_PARALLEL_THRESHOLD": C_PARALLEL_THRESHOLD,
    "FASTOPT_REDUCTION_CHUNK": REDUCTION_CHUNK,
    "FASTOPT_REDUCTION_LANES": REDUCTION_LANES,
    "FASTOPT_REDUCTION_BATCH": C_REDUCTION_BATCH,
    "FASTOPT_NORM_BLOCK": C_NORM_BLOCK,
    "FASTOPT_MIXED_BLOCK": C_MIXED_BLOCK,
    "FASTOPT_QUANT8_BLOCK": QUANT8_BLOCK,
    "FASTOPT_MLP_MR": C_MLP_MR,
    "FASTOPT_MLP_PARALLEL_MACS": C_MLP_PARALLEL_MACS,
    "FASTOPT_MLP_PANEL_IN_PLACE_BYTES": C_MLP_PANEL_IN_PLACE_BYTES,
    "FASTOPT_MLP_PARALLEL_ELEMENTS": C_MLP_PARALLEL_ELEMENTS,
    "FASTOPT_MLP_TASKS_PER_THREAD": C_MLP_TASKS_PER_THREAD,
    "FASTOPT_LANDSCAPE_ROWS": C_LANDSCAPE_ROWS,
    "FASTOPT_LANDSCAPE_CLASSES": C_LANDSCAPE_CLASSES,
}

# ---- cuda (on a GPU) ----------------------------------------------------------------------------

#: Threads per block of the elementwise kernels.
CUDA_THREADS_PER_BLOCK = 256
#: The grid holds at most this many blocks per SM (grid-stride loops cover the rest): enough to
#: hide memory latency, few enough that a block's start-up is paid over many elements.
CUDA_BLOCKS_PER_SM = 32
#: LAMB's segmented passes give each block chunks of this many blocks' worth of threads (each
#: chunk's piece of a tensor is one block's fixed-tree sum, a tensor's pieces summed in order).
CUDA_LAMB_CHUNK_BLOCKS = 16
#: Tile edge of the dense layers' matrix products (TILE x TILE threads per block).
CUDA_MLP_TILE = 16
#: Threads per block of the row-wise loss kernels.
CUDA_MLP_ROW_THREADS = 128

# ---- cuda under numba's simulator (NUMBA_ENABLE_CUDASIM=1) --------------------------------------

#: Threads per block: small, so that small test arrays span several blocks.
CUDASIM_THREADS_PER_BLOCK = 4
#: The grid size cap (the simulator has no SMs to count).
CUDASIM_MAX_BLOCKS = 4
#: As CUDA_LAMB_CHUNK_BLOCKS.
CUDASIM_LAMB_CHUNK_BLOCKS = 4
#: As CUDA_MLP_TILE and CUDA_MLP_ROW_THREADS.
CUDASIM_MLP_TILE = 4
CUDASIM_MLP_ROW_THREADS = 4
