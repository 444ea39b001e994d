/* roofline.h: the yardsticks of fastopt's benchmark, in C: same-traffic kernels and STREAM.
 *
 * A same-traffic kernel moves exactly the bytes of an optimizer step with trivial arithmetic. An
 * optimizer step reads the gradient and updates k arrays in place (param and the k - 1 state
 * arrays its mode uses: k = 1 for plain SGD, 2 for SGD with momentum, Adagrad and RMSprop, 3 for
 * Adam, 4 for AMSGrad or centered RMSprop with momentum), so it reads k + 1 arrays and writes k.
 * The same-traffic kernel does the same with one multiply-add per written element:
 *
 *   written_j[i] = written_j[i] + scale * read[i]        for j < n_written, i < n
 *
 * Its time is the time an optimizer step of that traffic cannot beat on this machine; the
 * benchmark reports each step's time as a ratio to it. STREAM's copy and triad (McCalpin) measure
 * the machine's bandwidth in the usual way (their destination is not read, so on most CPUs it
 * costs a write-allocate read that STREAM does not count).
 *
 * The kernels are built like the optimizer steps of optim.c: vectorized loops, split statically
 * over all OpenMP threads from FASTOPT_PARALLEL_THRESHOLD elements (fastopt_set_num_threads sets
 * how many), on the calling thread below. Fed to cffi's cdef like fastopt.h: plain declarations
 * only.
 */
#ifndef FASTOPT_ROOFLINE_H
#define FASTOPT_ROOFLINE_H

#include <stdint.h>

/* The same-traffic kernel of a step that updates n_written arrays (1 to 4) and reads one more.
 *
 * n          element count of every array
 * n_written  how many of w0..w3 are updated (1 to 4); the others are unused and may be NULL
 * w0..w3     arrays updated in place: w[i] = w[i] + scale * read[i]
 * read       the array only read (the gradient's place)
 * scale      the multiplier (a runtime value, so no compiler can fold the update away)
 */
void fastopt_same_traffic_f32(int64_t n, int n_written, float *w0, float *w1, float *w2,
                              float *w3, const float *read, float scale);
void fastopt_same_traffic_f64(int64_t n, int n_written, double *w0, double *w1, double *w2,
                              double *w3, const double *read, double scale);

/* The same-traffic kernel of an 8-bit step (csrc/quant8.h) with n_states state arrays (1 to 3):
 * it reads and writes w (float32, the parameter) and each c_j (uint8 codes), reads read (the
 * gradient), and reads and writes each a_j (float32, one per 256-element block):
 *
 *   w[i] = w[i] + scale * read[i],  c_j[i] = c_j[i] + 1 (wrapping),  a_j[b] = a_j[b] + scale
 *
 * for i < n, j < n_states, b < ceil(n / 256); the unused c_j and a_j may be NULL. */
void fastopt_same_traffic_quant8(int64_t n, int n_states, float *w, const float *read,
                                 uint8_t *c0, uint8_t *c1, uint8_t *c2, float *a0, float *a1,
                                 float *a2, float scale);

/* STREAM-style read: the sum of src's n elements in any order (vectorized, in the precision of
 * src). Counted as 1 array moved: the yardstick of the passes that only read. */
double fastopt_stream_read_f32(int64_t n, const float *src);
double fastopt_stream_read_f64(int64_t n, const double *src);

/* STREAM copy: dst[i] = src[i]. Counted as 2 arrays moved. */
void fastopt_stream_copy_f32(int64_t n, float *dst, const float *src);
void fastopt_stream_copy_f64(int64_t n, double *dst, const double *src);

/* STREAM triad: a[i] = b[i] + scalar * c[i]. Counted as 3 arrays moved. */
void fastopt_stream_triad_f32(int64_t n, float *a, const float *b, const float *c, float scalar);
void fastopt_stream_triad_f64(int64_t n, double *a, const double *b, const double *c,
                              double scalar);

#endif /* FASTOPT_ROOFLINE_H */
