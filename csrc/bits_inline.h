/* bits_inline.h: a float32's bits and back, without breaking strict aliasing (memcpy compiles to a
 * register move). */
#ifndef FASTOPT_BITS_INLINE_H
#define FASTOPT_BITS_INLINE_H

#include <stdint.h>
#include <string.h>

static inline uint32_t bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#endif
