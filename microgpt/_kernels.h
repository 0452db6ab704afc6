/* The C under microgpt's core (_core.pyx): arithmetic over plain arrays of doubles.

   Every vector op of the graph (a Vec) and the graph-free forward pass (the Decoder, mg_gpt
   below) calls these kernels, so every path computes the same numbers in the same order, to the
   last bit. _core.pyx owns the nodes, the graph and backward; this file owns only loops.

   Not here: Python objects, randomness, files, threads. Not a goal: speed at the cost of
   reproducibility. No kernel reassociates a sum or fuses a multiply-add (setup.py builds with
   -ffp-contract=off), and exp and log are this file's own (mg_exp, mg_log), not the C
   library's, so the results do not depend on the CPU or on which clone of a kernel it runs.

   Notation: E = n_emb (a position's width), T = positions attended over, hd = E / heads (one
   head's slice), n_ff = the MLP's hidden width, W_i = row i of a row-major matrix W. "The
   backward of y = f(x)" adds d loss / d x into xg (and into the weights' gradients) given
   yg = d loss / d y; gradients are always added to, never overwritten.

   Contents: portability macros; the node allocator; the queue's bit length; the kernels, each
   forward followed by its backward (dot and linear, rmsnorm, softmax and attention, a
   transformer block's two halves, Adam); the GPT's forward pass without a graph. */
#ifndef MICROGPT_KERNELS_H
#define MICROGPT_KERNELS_H

#include <Python.h>     /* Py_ssize_t */
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
   Portability. `restrict` promises the compiler that the arrays do not overlap (the callers
   check), so it vectorises the loops; on x86-64 with GCC and glibc each MG_CLONES kernel is also
   built for AVX2 and the CPU picks at load time. -DMG_PLAIN builds neither the clones nor the
   vector-extension loops, for checking that they change no result. */
#if defined(_MSC_VER)
#define restrict __restrict
#pragma fp_contract(off)            /* no fused multiply-adds: -ffp-contract=off elsewhere */
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
    && !defined(MG_PLAIN)
#define MG_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MG_CLONES
#endif

/* Running sums per dot product: lane k takes the terms j = k mod MG_LANES. mg_dot and
   mg_linear must agree on it (and on adding the lanes as (s0 + s1) + (s2 + s3)), or a Vec's
   linear and a list's would differ in the last bits. */
enum { MG_LANES = 4 };

#if (defined(__GNUC__) || defined(__clang__)) && !defined(MG_PLAIN)
typedef double mg_v4 __attribute__((vector_size(MG_LANES * sizeof(double))));
#define mg_load4(p) ({ mg_v4 v_; memcpy(&v_, (p), sizeof v_); v_; })   /* unaligned */
#define MG_V4 1
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define MG_SHUFFLE 1
#endif
#endif
#endif

/* ---------------------------------------------------------------------------------------------
   exp, log, erfc and whole powers of our own. A C library's exp and log may differ in the last
   bit from CPU to CPU (glibc picks a variant compiled for FMA where the CPU has it), so a run
   would not be the same everywhere. These use +, -, *, / and exact scalings by powers of two
   only, each rounded as IEEE 754 says (no fused multiply-add: -ffp-contract=off; doubles kept
   as doubles, SSE2 on 32-bit x86, not the x87's wider registers), so they give the same bits on
   every CPU, compiler and C library: reduce the argument by multiples of ln 2 split in two parts
   (Cody and Waite), then a polynomial of the remainder (log: fdlibm's, Sun 1993). exp and log
   are within one unit in the last place of glibc's. */
static const double mg_ln2_hi = 6.93147180369123816490e-01;    /* ln 2 to 32 bits: k ln2_hi exact */
static const double mg_ln2_lo = 1.90821492927058770002e-10;    /* ln 2 - ln2_hi */

/* y 2^k for y near 1 and -1075 <= k <= 1024 (exp's range): exact, unless the result is
   subnormal, then rounded once. */
static double mg_scale2(double y, int k) {
    union { double d; unsigned long long u; } p;
    if (k > 1023) { y *= 2.0; k -= 1; }
    else if (k < -1000) { y *= 9.332636185032189e-302; k += 1000; }   /* 2^-1000 */
    p.u = (unsigned long long)(k + 1023) << 52;
    return y * p.d;
}

/* e^x: x = k ln 2 + r (|r| <= ln 2 / 2, k by rounding x / ln 2), e^r by its Taylor series to the
   13th power (what is left is below 1e-17 of it), then times 2^k. No division, no call, and the
   polynomial in Estrin's form (pairs of terms, then pairs of pairs), whose short chains of
   dependent steps overlap: sampling a name is 9% faster than with Horner's form. */
static double mg_exp(double x) {
    if (x != x) return x;                                   /* NaN */
    if (x > 7.09782712893383973096e+02) return HUGE_VAL;    /* overflows */
    if (x < -7.45133219101941108420e+02) return 0.0;        /* underflows */
    double kd = (double)(long long)(x * 1.44269504088896338700e+00 + (x < 0.0 ? -0.5 : 0.5));
    double r = (x - kd * mg_ln2_hi) - kd * mg_ln2_lo;
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;          /* Estrin: short dependency chains */
    double a = 0.5 + r * 1.6666666666666666e-01;
    double b = 4.1666666666666664e-02 + r * 8.333333333333333e-03;
    double c = 1.388888888888889e-03 + r * 1.984126984126984e-04;
    double d = 2.48015873015873e-05 + r * 2.7557319223985893e-06;
    double e = 2.755731922398589e-07 + r * 2.505210838544172e-08;
    double f = 2.08767569878681e-09 + r * 1.6059043836821613e-10;
    double p = (a + r2 * b) + r4 * (c + r2 * d) + r8 * (e + r2 * f);   /* the terms from r^2 on, / r^2 */
    double y = 1.0 + (r + r2 * p);                          /* e^r */
    int k = (int)kd;
    return k == 0 ? y : mg_scale2(y, k);
}

/* ln x. */
static double mg_log(double x) {
    static const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                        Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                        Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                        Lg7 = 1.479819860511658591e-01;
    if (x != x) return x;                                   /* NaN */
    if (x < 0.0) return NAN;
    if (x == 0.0) return -HUGE_VAL;
    if (x == HUGE_VAL) return x;
    int e;
    double m = frexp(x, &e);                                /* x = m 2^e, m in [1/2, 1): exact */
    if (m < 7.07106781186547524401e-01) { m *= 2.0; e -= 1; }   /* m in [sqrt(1/2), sqrt(2)) */
    double f = m - 1.0;                                     /* exact */
    double kd = (double)e;
    double s = f / (2.0 + f);
    double z = s * s, w = z * z;
    double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
    double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
    double R = t2 + t1;
    double hfsq = 0.5 * f * f;
    return kd * mg_ln2_hi - ((hfsq - (s * (hfsq + R) + kd * mg_ln2_lo)) - f);
}

/* erfc x = 1 - erf x. Below 2: 1 - erf x, with erf x = (2 / sqrt(pi)) e^(-x^2) times the sum
   over n of 2^n x^(2n+1) / (1 3 5 ... (2n+1)), whose terms are all positive; from 2 on:
   e^(-x^2) / sqrt(pi) over the continued fraction x + (1/2) / (x + (2/2) / (x + (3/2) / ...)),
   60 levels deep, evaluated from the bottom. Within about 1e-13 of the true value, relatively;
   the point is that it uses mg_exp, so the standing of a run is the same on every CPU. */
static double mg_erfc(double x) {
    if (x != x) return x;                                   /* NaN */
    if (x < 0.0) return 2.0 - mg_erfc(-x);
    if (x > 27.3) return 0.0;                               /* below the smallest double */
    double x2 = x * x, e = mg_exp(-x2);
    if (x < 2.0) {
        double term = x, sum = x;
        for (int n = 1; n < 100 && term > sum * 1e-17; n++) {
            term *= 2.0 * x2 / (double)(2 * n + 1);
            sum += term;
        }
        return 1.0 - 1.1283791670955126 * e * sum;          /* 2 / sqrt(pi) */
    }
    double f = x;
    for (int n = 60; n >= 1; n--) f = x + (0.5 * (double)n) / f;
    return 0.5641895835477563 * e / f;                      /* 1 / sqrt(pi) */
}

/* x^n for a whole n >= 0, by squaring (the same products in the same order on every CPU). */
static double mg_powi(double x, long long n) {
    double r = 1.0;
    while (n > 0) {
        if (n & 1) r *= x;
        n >>= 1;
        if (n > 0) x *= x;
    }
    return r;
}

/* ---------------------------------------------------------------------------------------------
   The allocator of Vec nodes' arrays (values and gradients, parents, attention weights) and of
   losses: per-size free lists. A training step makes and frees the same sizes every time, so
   after the first step no node costs a malloc. A block remembers its size class in a 16-byte
   header; the lists keep at most MG_MEM_KEPT bytes, the rest goes back to malloc. */
enum { MG_MEM_UNIT = 64, MG_MEM_CLASSES = 256 };     /* classes of 64 .. 16384 bytes */
#define MG_MEM_KEPT ((size_t)32 << 20)
typedef struct mg_block { struct mg_block* next; size_t cls; } mg_block;
static mg_block* mg_mem_lists[MG_MEM_CLASSES + 1];
static size_t mg_mem_kept = 0;

/* n bytes (aligned as malloc's, 16), or NULL when memory runs out. */
static void* mg_mem_get(size_t n) {
    size_t cls = (n + sizeof(mg_block) + MG_MEM_UNIT - 1) / MG_MEM_UNIT;
    mg_block* b;
    if (cls <= MG_MEM_CLASSES && mg_mem_lists[cls] != NULL) {
        b = mg_mem_lists[cls];
        mg_mem_lists[cls] = b->next;
        mg_mem_kept -= cls * MG_MEM_UNIT;
        return b + 1;
    }
    b = (mg_block*)malloc(cls <= MG_MEM_CLASSES ? cls * MG_MEM_UNIT : n + sizeof(mg_block));
    if (b == NULL) return NULL;
    b->cls = cls;
    return b + 1;
}

/* Give back a block from mg_mem_get (NULL: nothing). */
static void mg_mem_put(void* p) {
    if (p == NULL) return;
    mg_block* b = (mg_block*)p - 1;
    if (b->cls <= MG_MEM_CLASSES && mg_mem_kept + b->cls * MG_MEM_UNIT <= MG_MEM_KEPT) {
        b->next = mg_mem_lists[b->cls];
        mg_mem_lists[b->cls] = b;
        mg_mem_kept += b->cls * MG_MEM_UNIT;
    } else {
        free(b);
    }
}

/* ---------------------------------------------------------------------------------------------
   The backward queue's radix heap: the number of bits of x (0 for 0), the bucket of a key. */
static inline int mg_bitlen(unsigned long long x) {
#if defined(__GNUC__) || defined(__clang__)
    return x ? 64 - __builtin_clzll(x) : 0;
#else
    int n = 0;
    while (x) { n++; x >>= 1; }
    return n;
#endif
}

/* ---------------------------------------------------------------------------------------------
   dot and linear. */

/* sum_j a_j b_j in MG_LANES running sums (the adds need not wait on one another), added as
   (s0 + s1) + (s2 + s3). */
static inline double mg_dot(const double* restrict a, const double* restrict b, Py_ssize_t n) {
    Py_ssize_t m = n - n % MG_LANES;
    double s[MG_LANES] = {0.0, 0.0, 0.0, 0.0};
    for (Py_ssize_t j = 0; j < m; j += MG_LANES)
        for (int k = 0; k < MG_LANES; k++) s[k] += a[j + k] * b[j + k];
    for (Py_ssize_t j = m; j < n; j++) s[0] += a[j] * b[j];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* y = relu?(scale W x) (W: rows x cols), y_i = scale mg_dot(W_i, x) bit for bit. With GCC or
   Clang, four rows at a time: a vector of MG_LANES doubles holds a row's running sums, the four
   rows share each load of x, and nothing is reordered (a lane's multiply-adds stay in order;
   -ffp-contract=off keeps them unfused). */
MG_CLONES static void mg_linear(const double* restrict w, const double* restrict x,
                                double* restrict y, Py_ssize_t rows, Py_ssize_t cols,
                                double scale, int relu) {
    Py_ssize_t i = 0;
#ifdef MG_V4
    Py_ssize_t m = cols - cols % MG_LANES;
    for (; i + 4 <= rows; i += 4) {
        const double* w0 = w + i * cols;
        const double* w1 = w0 + cols;
        const double* w2 = w1 + cols;
        const double* w3 = w2 + cols;
        mg_v4 s0 = {0.0, 0.0, 0.0, 0.0}, s1 = s0, s2 = s0, s3 = s0;
        for (Py_ssize_t j = 0; j < m; j += MG_LANES) {
            mg_v4 xj = mg_load4(x + j);
            s0 += mg_load4(w0 + j) * xj;
            s1 += mg_load4(w1 + j) * xj;
            s2 += mg_load4(w2 + j) * xj;
            s3 += mg_load4(w3 + j) * xj;
        }
        for (Py_ssize_t j = m; j < cols; j++) {
            s0[0] += w0[j] * x[j];
            s1[0] += w1[j] * x[j];
            s2[0] += w2[j] * x[j];
            s3[0] += w3[j] * x[j];
        }
#ifdef MG_SHUFFLE   /* the four rows' (s[0] + s[1]) + (s[2] + s[3]) as two vector adds */
        mg_v4 t0 = __builtin_shufflevector(s0, s1, 0, 4, 2, 6) + __builtin_shufflevector(s0, s1, 1, 5, 3, 7);
        mg_v4 t1 = __builtin_shufflevector(s2, s3, 0, 4, 2, 6) + __builtin_shufflevector(s2, s3, 1, 5, 3, 7);
        mg_v4 out = __builtin_shufflevector(t0, t1, 0, 1, 4, 5) + __builtin_shufflevector(t0, t1, 2, 3, 6, 7);
#else
        mg_v4 out = {(s0[0] + s0[1]) + (s0[2] + s0[3]), (s1[0] + s1[1]) + (s1[2] + s1[3]),
                     (s2[0] + s2[1]) + (s2[2] + s2[3]), (s3[0] + s3[1]) + (s3[2] + s3[3])};
#endif
        for (int r = 0; r < 4; r++) {
            double o = scale * out[r];
            y[i + r] = (!relu || o > 0.0) ? o : 0.0;
        }
    }
#endif
    for (; i < rows; i++) {
        double out = scale * mg_dot(w + i * cols, x, cols);
        y[i] = (!relu || out > 0.0) ? out : 0.0;
    }
}

/* One row of a linear layer's backward: xg += g wi, wgi += g x. */
static inline void mg_linear_back_row(const double* restrict wi, double* restrict wgi,
                                      const double* restrict x, double* restrict xg, double g,
                                      Py_ssize_t cols) {
    Py_ssize_t j = 0;
#ifdef MG_V4
    mg_v4 g4 = {g, g, g, g};
    for (; j + MG_LANES <= cols; j += MG_LANES) {   /* the same adds, a vector at a time */
        mg_v4 xg4 = mg_load4(xg + j) + g4 * mg_load4(wi + j);
        mg_v4 wg4 = mg_load4(wgi + j) + g4 * mg_load4(x + j);
        memcpy(xg + j, &xg4, sizeof xg4);
        memcpy(wgi + j, &wg4, sizeof wg4);
    }
#endif
    for (; j < cols; j++) {
        xg[j] += g * wi[j];
        wgi[j] += g * x[j];
    }
}

#ifdef MG_V4
/* Four rows of a linear layer's backward, a, b, c, d in that order: a vector of xg stays in
   registers while the four rows add into it one after the other, so each element of xg gets
   the same terms in the same order as from mg_linear_back_row four times. */
static inline void mg_linear_back_rows4(const double* const* wr, double* const* wgr,
                                        const double* restrict x, double* restrict xg,
                                        const double* g, Py_ssize_t cols) {
    const double* restrict w0 = wr[0];
    const double* restrict w1 = wr[1];
    const double* restrict w2 = wr[2];
    const double* restrict w3 = wr[3];
    double* restrict wg0 = wgr[0];
    double* restrict wg1 = wgr[1];
    double* restrict wg2 = wgr[2];
    double* restrict wg3 = wgr[3];
    mg_v4 g0 = {g[0], g[0], g[0], g[0]}, g1 = {g[1], g[1], g[1], g[1]};
    mg_v4 g2 = {g[2], g[2], g[2], g[2]}, g3 = {g[3], g[3], g[3], g[3]};
    Py_ssize_t j = 0;
    for (; j + MG_LANES <= cols; j += MG_LANES) {
        mg_v4 x4 = mg_load4(x + j);
        mg_v4 xg4 = mg_load4(xg + j);
        xg4 = xg4 + g0 * mg_load4(w0 + j);
        xg4 = xg4 + g1 * mg_load4(w1 + j);
        xg4 = xg4 + g2 * mg_load4(w2 + j);
        xg4 = xg4 + g3 * mg_load4(w3 + j);
        memcpy(xg + j, &xg4, sizeof xg4);
        mg_v4 wg4 = mg_load4(wg0 + j) + g0 * x4;
        memcpy(wg0 + j, &wg4, sizeof wg4);
        wg4 = mg_load4(wg1 + j) + g1 * x4;
        memcpy(wg1 + j, &wg4, sizeof wg4);
        wg4 = mg_load4(wg2 + j) + g2 * x4;
        memcpy(wg2 + j, &wg4, sizeof wg4);
        wg4 = mg_load4(wg3 + j) + g3 * x4;
        memcpy(wg3 + j, &wg4, sizeof wg4);
    }
    for (; j < cols; j++) {
        xg[j] += g[0] * w0[j];
        xg[j] += g[1] * w1[j];
        xg[j] += g[2] * w2[j];
        xg[j] += g[3] * w3[j];
        wg0[j] += g[0] * x[j];
        wg1[j] += g[1] * x[j];
        wg2[j] += g[2] * x[j];
        wg3[j] += g[3] * x[j];
    }
}
#endif

/* The backward of y = relu?(scale W x): xg += W^T g', wg += g' x^T, g' = scale yg where y > 0.
   Row by row, a row whose g' is 0 skipped; with GCC or Clang the rows not skipped go four at a
   time (mg_linear_back_rows4), each element of xg getting the same terms in the same order. */
MG_CLONES static void mg_linear_back(const double* restrict w, double* restrict wg,
                                     const double* restrict x, double* restrict xg,
                                     const double* restrict gy, const double* restrict y,
                                     Py_ssize_t rows, Py_ssize_t cols, double scale, int relu) {
    const double* wr[4];
    double* wgr[4];
    double g[4];
    int n = 0;
    for (Py_ssize_t i = 0; i < rows; i++) {
        if (relu && !(y[i] > 0.0)) continue;
        double gi = gy[i] * scale;
        if (gi == 0.0) continue;
#ifdef MG_V4
        wr[n] = w + i * cols;
        wgr[n] = wg + i * cols;
        g[n++] = gi;
        if (n == 4) {
            mg_linear_back_rows4(wr, wgr, x, xg, g, cols);
            n = 0;
        }
#else
        mg_linear_back_row(w + i * cols, wg + i * cols, x, xg, gi, cols);
#endif
    }
    for (int r = 0; r < n; r++)                     /* the rows left over */
        mg_linear_back_row(wr[r], wgr[r], x, xg, g[r], cols);
}

/* ---------------------------------------------------------------------------------------------
   RMSNorm (no learned scale). */

/* y = x s with s = 1 / sqrt(mean(x^2) + eps), the squares summed left to right; returns s. */
static double mg_rmsnorm(const double* x, double* y, Py_ssize_t n, double eps) {
    double ms = 0.0;
    for (Py_ssize_t j = 0; j < n; j++) ms += x[j] * x[j];
    double s = 1.0 / sqrt(ms / (double)n + eps);
    for (Py_ssize_t j = 0; j < n; j++) y[j] = x[j] * s;
    return s;
}

/* The backward of y = x s (s from mg_rmsnorm): xg += s yg - x s^3/n (yg . x). */
static void mg_rmsnorm_back(const double* x, double* xg, const double* yg, Py_ssize_t n,
                            double s) {
    double dot = 0.0;
    for (Py_ssize_t j = 0; j < n; j++) dot += yg[j] * x[j];
    double s3 = s * s * s / (double)n;
    for (Py_ssize_t j = 0; j < n; j++) xg[j] += s * yg[j] - x[j] * s3 * dot;
}

/* ---------------------------------------------------------------------------------------------
   softmax and attention. */

/* p[0:n] (n >= 1) becomes softmax(p); returns log sum_j exp(p_j). The max is subtracted
   first, so exp cannot overflow. */
static double mg_softmax(double* p, Py_ssize_t n) {
    double m = p[0], s = 0.0;
    for (Py_ssize_t j = 1; j < n; j++) if (p[j] > m) m = p[j];
    for (Py_ssize_t j = 0; j < n; j++) { p[j] = mg_exp(p[j] - m); s += p[j]; }
    for (Py_ssize_t j = 0; j < n; j++) p[j] /= s;
    return m + mg_log(s);
}

/* One head of causal attention over T positions: a[t] = softmax_t(scale q . k[t]),
   out = sum_t a[t] v[t]. q, out and each k[t] + off, v[t] + off are hd doubles. */
static void mg_attend(const double* restrict q, const double* const* k,
                      const double* const* v, Py_ssize_t off, Py_ssize_t T, Py_ssize_t hd,
                      double scale, double* restrict a, double* restrict out) {
    for (Py_ssize_t t = 0; t < T; t++) {
        const double* restrict kt = k[t] + off;
        double y = 0.0;
        for (Py_ssize_t j = 0; j < hd; j++) y += q[j] * kt[j];
        a[t] = y * scale;
    }
    mg_softmax(a, T);
    for (Py_ssize_t j = 0; j < hd; j++) out[j] = 0.0;
    for (Py_ssize_t t = 0; t < T; t++) {
        const double* restrict vt = v[t] + off;
        double at = a[t];
        for (Py_ssize_t j = 0; j < hd; j++) out[j] += at * vt[j];
    }
}

/* The backward of every head's mg_attend (head h: out_h = sum_t a_t v[t]_h, a = softmax_t(scale
   q_h . k[t]_h), its weights at a + h T): from g (d out, heads hd doubles) into qg and the keys'
   and values' gradients kg[t], vg[t]. ga: scratch for T doubles. No restrict: q may be a key. */
static void mg_attention_back(const double* const* kd, double* const* kg,
                              const double* const* vd, double* const* vg, Py_ssize_t T,
                              Py_ssize_t heads, Py_ssize_t hd, double scale,
                              const double* weights, const double* g, const double* q,
                              double* qg, double* ga) {
    for (Py_ssize_t h = 0; h < heads; h++) {
        Py_ssize_t lo = h * hd;
        const double* a = weights + h * T;
        double dot = 0.0;
        for (Py_ssize_t t = 0; t < T; t++) {            /* d out / d a_t, and into v[t] */
            const double* d = vd[t] + lo;
            double* dg = vg[t] + lo;
            double gi = 0.0;
            for (Py_ssize_t j = 0; j < hd; j++) {
                gi += g[lo + j] * d[j];
                dg[j] += a[t] * g[lo + j];
            }
            ga[t] = gi;
            dot += a[t] * gi;
        }
        for (Py_ssize_t t = 0; t < T; t++) {            /* through the softmax, into q and k[t] */
            const double* d = kd[t] + lo;
            double* dg = kg[t] + lo;
            double gi = a[t] * (ga[t] - dot) * scale;
            for (Py_ssize_t j = 0; j < hd; j++) {
                qg[lo + j] += gi * d[j];
                dg[j] += gi * q[lo + j];
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
   A transformer block's two halves at one position, in the order model.py writes them (each
   vector op the kernel its Vec op calls), each forward followed by its backward. Both forwards
   return the rmsnorm factor s. The insides a forward leaves (and its backward reads) sit in one
   array, each followed by its gradient, which must start at zero. */

/* The weight matrices of one layer, in this order: wq, wk, wv, wo (E x E), fc1 (n_ff x E),
   fc2 (E x n_ff). */
enum { MG_LAYER_WEIGHTS = 6 };

/* Attention: xn = rmsnorm(x), k = wk xn, v = wv xn, q = wq xn, head h of att attends over
   kp[0..T), vp[0..T) (kp[T-1] = k, vp[T-1] = v) with weights a[h T .. h T + T),
   o = wo att, y = x + o. w: wq, wk, wv, wo, each E x E. */
static double mg_attention_block(const double* x, double* y, const double* const* w,
                                 double* xn, double* q, double* k, double* v,
                                 const double* const* kp, const double* const* vp,
                                 Py_ssize_t T, Py_ssize_t E, Py_ssize_t heads, double eps,
                                 double* a, double* att, double* o) {
    Py_ssize_t hd = E / heads;
    double scale = 1.0 / sqrt((double)hd);
    double s = mg_rmsnorm(x, xn, E, eps);
    mg_linear(w[1], xn, k, E, E, 1.0, 0);
    mg_linear(w[2], xn, v, E, E, 1.0, 0);
    mg_linear(w[0], xn, q, E, E, 1.0, 0);
    for (Py_ssize_t h = 0; h < heads; h++)
        mg_attend(q + h * hd, kp, vp, h * hd, T, hd, scale, a + h * T, att + h * hd);
    mg_linear(w[3], att, o, E, E, 1.0, 0);
    for (Py_ssize_t j = 0; j < E; j++) y[j] = x[j] + o[j];
    return s;
}

/* The insides of an attention block: xn, q, att, o (E each), each followed by its gradient. */
enum { MG_ATTENTION_INSIDES = 8 };

/* The backward of mg_attention_block, op by op as the separate nodes' backward passes ran (the
   sum, wo, attention, wq, wv, wk, rmsnorm), so the gradients are theirs to the bit. in: its
   insides, a: its attention weights, s: its factor; kd, kg, vd, vg: the T keys' and values'
   arrays and gradients (the last, this position's own); wg: the four weights' gradients;
   ga: scratch for T doubles. */
static void mg_attention_block_back(const double* x, double* xg, const double* yg,
                                    const double* const* w, double* const* wg, double* in,
                                    const double* a, double s, const double* const* kd,
                                    double* const* kg, const double* const* vd,
                                    double* const* vg, Py_ssize_t T, Py_ssize_t E,
                                    Py_ssize_t heads, double* ga) {
    Py_ssize_t hd = E / heads;
    double *xn = in, *xng = in + E, *q = in + 2 * E, *qg = in + 3 * E;
    double *att = in + 4 * E, *attg = in + 5 * E, *o = in + 6 * E, *og = in + 7 * E;
    for (Py_ssize_t j = 0; j < E; j++) xg[j] += yg[j];          /* y = x + o */
    for (Py_ssize_t j = 0; j < E; j++) og[j] += yg[j];
    mg_linear_back(w[3], wg[3], att, attg, og, o, E, E, 1.0, 0);
    mg_attention_back(kd, kg, vd, vg, T, heads, hd, 1.0 / sqrt((double)hd), a, attg, q, qg, ga);
    mg_linear_back(w[0], wg[0], xn, xng, qg, q, E, E, 1.0, 0);
    mg_linear_back(w[2], wg[2], xn, xng, vg[T - 1], vd[T - 1], E, E, 1.0, 0);
    mg_linear_back(w[1], wg[1], xn, xng, kg[T - 1], kd[T - 1], E, E, 1.0, 0);
    mg_rmsnorm_back(x, xg, xng, E, s);
}

/* MLP: xn = rmsnorm(x), h = relu(fc1 xn) (n_ff), o = fc2 h, y = x + o. */
static double mg_mlp_block(const double* x, double* y, const double* fc1, const double* fc2,
                           double* xn, double* h, double* o, Py_ssize_t E, Py_ssize_t n_ff,
                           double eps) {
    double s = mg_rmsnorm(x, xn, E, eps);
    mg_linear(fc1, xn, h, n_ff, E, 1.0, 1);
    mg_linear(fc2, h, o, E, n_ff, 1.0, 0);
    for (Py_ssize_t j = 0; j < E; j++) y[j] = x[j] + o[j];
    return s;
}

/* The insides of an MLP block: xn, o (E each) and h (n_ff), each followed by its gradient. */
#define MG_MLP_INSIDES(E, n_ff) (4 * (E) + 2 * (n_ff))

/* The backward of mg_mlp_block, op by op as the separate nodes' ran (the sum, fc2, fc1,
   rmsnorm). in: its insides (xn, xng, o, og, then h, hg), s: its factor. */
static void mg_mlp_block_back(const double* x, double* xg, const double* yg, const double* fc1,
                              double* fc1g, const double* fc2, double* fc2g, double* in,
                              double s, Py_ssize_t E, Py_ssize_t n_ff) {
    double *xn = in, *xng = in + E, *o = in + 2 * E, *og = in + 3 * E;
    double *h = in + 4 * E, *hg = h + n_ff;
    for (Py_ssize_t j = 0; j < E; j++) xg[j] += yg[j];          /* y = x + o */
    for (Py_ssize_t j = 0; j < E; j++) og[j] += yg[j];
    mg_linear_back(fc2, fc2g, h, hg, og, o, E, n_ff, 1.0, 0);
    mg_linear_back(fc1, fc1g, xn, xng, hg, h, n_ff, E, 1.0, 1);
    mg_rmsnorm_back(x, xg, xng, E, s);
}

/* ---------------------------------------------------------------------------------------------
   A name's positions at once (GPT.loss, the training step): the embeddings, each half of each
   layer, and the loss, each over a name's T positions (E doubles each, position after position)
   as one node. A forward runs the positions first to last with the one-position kernels above;
   its backward runs them last to first. That is the order in which the graph of one node per
   position and op ran its backward (newest node first), and every gradient has one writer per
   position, so each gradient is the same terms added in the same order: the same bits. Each
   takes its saved insides from the caller, mg_*_seq_size bytes, zeroed. */

/* x[t] = wte[tokens[t]] + wpe[t]. */
static void mg_embed_seq(const double* wte, const double* wpe, const Py_ssize_t* tokens,
                         Py_ssize_t T, Py_ssize_t E, double* x) {
    for (Py_ssize_t t = 0; t < T; t++)
        for (Py_ssize_t j = 0; j < E; j++) x[t * E + j] = wte[tokens[t] * E + j] + wpe[t * E + j];
}

static void mg_embed_seq_back(double* wteg, double* wpeg, const Py_ssize_t* tokens,
                              Py_ssize_t T, Py_ssize_t E, const double* xg) {
    for (Py_ssize_t t = T - 1; t >= 0; t--) {
        for (Py_ssize_t j = 0; j < E; j++) wteg[tokens[t] * E + j] += xg[t * E + j];
        for (Py_ssize_t j = 0; j < E; j++) wpeg[t * E + j] += xg[t * E + j];
    }
}

/* Attention over positions: position t is mg_attention_block over keys and values 0 .. t. Saved:
   per position its attention weights (heads x T), insides and factor; then the keys, their
   gradients, the values, theirs (T x E each); scratch (T); pointers to each key's and value's
   arrays (4 T). */
static Py_ssize_t mg_attention_seq_stride(Py_ssize_t T, Py_ssize_t E, Py_ssize_t heads) {
    return heads * T + MG_ATTENTION_INSIDES * E + 1;
}

static size_t mg_attention_seq_size(Py_ssize_t T, Py_ssize_t E, Py_ssize_t heads) {
    return (size_t)(T * mg_attention_seq_stride(T, E, heads) + 4 * T * E + T) * sizeof(double)
           + (size_t)(4 * T) * sizeof(double*);
}

static double** mg_attention_seq_kv(double* saved, Py_ssize_t T, Py_ssize_t E, Py_ssize_t heads) {
    double* K = saved + T * mg_attention_seq_stride(T, E, heads);
    return (double**)(K + 4 * T * E + T);       /* kd, kg, vd, vg: T pointers each */
}

static void mg_attention_seq(const double* x, double* y, const double* const* w, Py_ssize_t T,
                             Py_ssize_t E, Py_ssize_t heads, double eps, double* saved) {
    Py_ssize_t P = mg_attention_seq_stride(T, E, heads);
    double* K = saved + T * P;
    double** kv = mg_attention_seq_kv(saved, T, E, heads);
    for (Py_ssize_t t = 0; t < T; t++) {
        kv[t] = K + t * E;                      /* the keys, their gradients, the values, theirs */
        kv[T + t] = K + T * E + t * E;
        kv[2 * T + t] = K + 2 * T * E + t * E;
        kv[3 * T + t] = K + 3 * T * E + t * E;
    }
    for (Py_ssize_t t = 0; t < T; t++) {
        double* a = saved + t * P;
        double* in = a + heads * T;
        in[MG_ATTENTION_INSIDES * E] = mg_attention_block(
            x + t * E, y + t * E, w, in, in + 2 * E, kv[t], kv[2 * T + t],
            (const double* const*)kv, (const double* const*)(kv + 2 * T), t + 1, E, heads, eps,
            a, in + 4 * E, in + 6 * E);
    }
}

static void mg_attention_seq_back(const double* x, double* xg, const double* yg,
                                  const double* const* w, double* const* wg, Py_ssize_t T,
                                  Py_ssize_t E, Py_ssize_t heads, double* saved) {
    Py_ssize_t P = mg_attention_seq_stride(T, E, heads);
    double** kv = mg_attention_seq_kv(saved, T, E, heads);
    double* ga = saved + T * P + 4 * T * E;
    for (Py_ssize_t t = T - 1; t >= 0; t--) {
        double* a = saved + t * P;
        double* in = a + heads * T;
        mg_attention_block_back(x + t * E, xg + t * E, yg + t * E, w, wg, in, a,
                                in[MG_ATTENTION_INSIDES * E], (const double* const*)kv,
                                kv + T, (const double* const*)(kv + 2 * T), kv + 3 * T, t + 1,
                                E, heads, ga);
    }
}

/* The MLP over positions: position t is mg_mlp_block. Saved: per position its insides and
   factor. */
static size_t mg_mlp_seq_size(Py_ssize_t T, Py_ssize_t E, Py_ssize_t n_ff) {
    return (size_t)(T * (MG_MLP_INSIDES(E, n_ff) + 1)) * sizeof(double);
}

static void mg_mlp_seq(const double* x, double* y, const double* fc1, const double* fc2,
                       Py_ssize_t T, Py_ssize_t E, Py_ssize_t n_ff, double eps, double* saved) {
    Py_ssize_t P = MG_MLP_INSIDES(E, n_ff) + 1;
    for (Py_ssize_t t = 0; t < T; t++) {
        double* in = saved + t * P;
        in[P - 1] = mg_mlp_block(x + t * E, y + t * E, fc1, fc2, in, in + 4 * E, in + 2 * E, E,
                                 n_ff, eps);
    }
}

static void mg_mlp_seq_back(const double* x, double* xg, const double* yg, const double* fc1,
                            double* fc1g, const double* fc2, double* fc2g, Py_ssize_t T,
                            Py_ssize_t E, Py_ssize_t n_ff, double* saved) {
    Py_ssize_t P = MG_MLP_INSIDES(E, n_ff) + 1;
    for (Py_ssize_t t = T - 1; t >= 0; t--) {
        double* in = saved + t * P;
        mg_mlp_block_back(x + t * E, xg + t * E, yg + t * E, fc1, fc1g, fc2, fc2g, in, in[P - 1],
                          E, n_ff);
    }
}

/* The loss over positions: position t's logits = lm_head rmsnorm(x[t]) (V of them) and its
   cross-entropy -log softmax(logits)[targets[t]]; returns their sum, position by position.
   Saved: per position xn and its gradient (E each), the logits and theirs, d ce / d logits
   (V each), the factor. */
static Py_ssize_t mg_loss_seq_stride(Py_ssize_t E, Py_ssize_t V) { return 2 * E + 3 * V + 1; }

static size_t mg_loss_seq_size(Py_ssize_t T, Py_ssize_t E, Py_ssize_t V) {
    return (size_t)(T * mg_loss_seq_stride(E, V)) * sizeof(double);
}

static double mg_loss_seq(const double* x, const double* lm, const Py_ssize_t* targets,
                          Py_ssize_t T, Py_ssize_t E, Py_ssize_t V, double eps, double* saved) {
    Py_ssize_t P = mg_loss_seq_stride(E, V);
    double total = 0.0;
    for (Py_ssize_t t = 0; t < T; t++) {
        double* xn = saved + t * P;
        double* logits = xn + 2 * E;
        double* ds = logits + 2 * V;
        xn[P - 1] = mg_rmsnorm(x + t * E, xn, E, eps);
        mg_linear(lm, xn, logits, V, E, 1.0, 0);
        memcpy(ds, logits, (size_t)V * sizeof(double));
        double lse = mg_softmax(ds, V);
        ds[targets[t]] -= 1.0;                  /* d ce / d logits_j = softmax_j - [j == target] */
        total += lse - logits[targets[t]];
    }
    return total;
}

/* The backward of the sum mg_loss_seq returned, g = d loss / d (each position's ce). */
static void mg_loss_seq_back(const double* x, double* xg, double g, const double* lm,
                             double* lmg, Py_ssize_t T, Py_ssize_t E, Py_ssize_t V,
                             double* saved) {
    Py_ssize_t P = mg_loss_seq_stride(E, V);
    for (Py_ssize_t t = T - 1; t >= 0; t--) {
        double* xn = saved + t * P;
        double* logits = xn + 2 * E;
        double* lg = logits + V;
        const double* ds = logits + 2 * V;
        for (Py_ssize_t j = 0; j < V; j++) lg[j] += g * ds[j];
        mg_linear_back(lm, lmg, xn, xn + E, lg, logits, V, E, 1.0, 0);
        mg_rmsnorm_back(x + t * E, xg + t * E, xn + E, E, xn[P - 1]);
    }
}

/* ---------------------------------------------------------------------------------------------
   Adam: one bias-corrected step over n weights (c1, c2: the corrections 1 / (1 - beta^t)), each
   gradient zeroed once used. */
MG_CLONES static void mg_adam(double* restrict w, double* restrict g, double* restrict m,
                              double* restrict v, Py_ssize_t n, double lr, double b1,
                              double b2, double c1, double c2, double eps) {
    for (Py_ssize_t i = 0; i < n; i++) {
        double gi = g[i];
        m[i] = b1 * m[i] + (1.0 - b1) * gi;
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
        w[i] -= lr * (m[i] * c1) / (sqrt(v[i] * c2) + eps);
        g[i] = 0.0;
    }
}

/* ---------------------------------------------------------------------------------------------
   The GPT's forward pass without a graph (the Decoder in _core.pyx): plain arrays, a KV cache of
   plain arrays, and the weights read in place from their ValMatrix arrays. */
typedef struct {
    Py_ssize_t vocab, n_ctx, n_emb, n_head, n_layer, n_ff;
    double eps;
    const double* wte;              /* vocab x n_emb */
    const double* wpe;              /* n_ctx x n_emb */
    const double* lm_head;          /* vocab x n_emb */
    const double** layers;          /* per layer, MG_LAYER_WEIGHTS matrices: wq, wk, wv, wo
                                       (n_emb x n_emb), fc1 (n_ff x n_emb), fc2 (n_emb x n_ff) */
    double* keys;                   /* per layer, n_ctx x n_emb */
    double* values;                 /* per layer, n_ctx x n_emb */
    const double** kp;              /* n_ctx: this layer's key rows so far */
    const double** vp;              /* n_ctx: and its value rows */
    double *x, *xn, *q, *att, *tmp, *hidden, *logits;
    double* a;                      /* n_head x n_ctx: attention weights */
} mg_gpt;

/* logits (vocab) after token at pos, the KV cache holding positions 0 .. pos-1; the model's
   forward pass (model.py) block for block. */
static void mg_gpt_forward(mg_gpt* m, Py_ssize_t token, Py_ssize_t pos) {
    Py_ssize_t E = m->n_emb, T = pos + 1;
    for (Py_ssize_t j = 0; j < E; j++) m->x[j] = m->wte[token * E + j] + m->wpe[pos * E + j];
    for (Py_ssize_t l = 0; l < m->n_layer; l++) {
        const double** w = m->layers + MG_LAYER_WEIGHTS * l;
        double* K = m->keys + l * m->n_ctx * E;
        double* V = m->values + l * m->n_ctx * E;
        for (Py_ssize_t t = 0; t < T; t++) { m->kp[t] = K + t * E; m->vp[t] = V + t * E; }
        mg_attention_block(m->x, m->x, w, m->xn, m->q, K + pos * E, V + pos * E, m->kp, m->vp,
                           T, E, m->n_head, m->eps, m->a, m->att, m->tmp);
        mg_mlp_block(m->x, m->x, w[4], w[5], m->xn, m->hidden, m->tmp, E, m->n_ff, m->eps);
    }
    mg_rmsnorm(m->x, m->xn, E, m->eps);
    mg_linear(m->lm_head, m->xn, m->logits, m->vocab, E, 1.0, 0);
}

/* -log softmax(logits)[target], as cross_entropy computes it; scratch holds vocab doubles. */
static double mg_gpt_nll(const mg_gpt* m, Py_ssize_t target, double* scratch) {
    for (Py_ssize_t j = 0; j < m->vocab; j++) scratch[j] = m->logits[j];
    return mg_softmax(scratch, m->vocab) - m->logits[target];
}

#endif /* MICROGPT_KERNELS_H */
