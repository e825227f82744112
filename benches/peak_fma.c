/* The machine's peak fp32 FLOP rate per core, for `compare_arch.py --peak-gflops`.
 *
 *   gcc -O2 -march=native -o /tmp/peak_fma benches/peak_fma.c && /tmp/peak_fma
 *
 * Prints the clock (a chain of dependent register adds, one per cycle) and the rate of
 * 12 independent chains of 16-lane (AVX-512) and 8-lane (AVX2) fused multiply-adds, enough
 * to fill two FMA pipes of 4-cycle latency. Multiply the per-core rate by the cores used
 * (2 here). Run it on a quiet machine, a few times: VMs of this project's kind vary by 10%
 * or more from run to run. Needs a CPU with AVX-512F (the AVX2 line alone: drop the zmm part).
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define ADD10 "add %1,%0\n\t" "add %1,%0\n\t" "add %1,%0\n\t" "add %1,%0\n\t" "add %1,%0\n\t" \
              "add %1,%0\n\t" "add %1,%0\n\t" "add %1,%0\n\t" "add %1,%0\n\t" "add %1,%0"
#define Z(v) v = _mm512_fmadd_ps(v, b, c);
#define Y(v) v = _mm256_fmadd_ps(v, b2, c2);

int main(void) {
  /* Distinct starting values (read through volatile) keep the compiler from merging chains. */
  volatile float iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  long n = 100000000, x = 0, y = 3;
  double t0 = now();
  /* A register operand: some Intel cores eliminate adds of an immediate. */
  for (long i = 0; i < n; i++) __asm__ volatile(ADD10 : "+r"(x) : "r"(y));
  double ghz = n * 10 / (now() - t0) / 1e9;
  printf("clock (dependent adds): %.2f GHz\n", ghz);

  __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  __m512 a0 = _mm512_set1_ps(iv[0]), a1 = _mm512_set1_ps(iv[1]), a2 = _mm512_set1_ps(iv[2]),
         a3 = _mm512_set1_ps(iv[3]), a4 = _mm512_set1_ps(iv[4]), a5 = _mm512_set1_ps(iv[5]),
         a6 = _mm512_set1_ps(iv[6]), a7 = _mm512_set1_ps(iv[7]), a8 = _mm512_set1_ps(iv[8]),
         a9 = _mm512_set1_ps(iv[9]), a10 = _mm512_set1_ps(iv[10]), a11 = _mm512_set1_ps(iv[11]);
  long m = 100000000;
  t0 = now();
  for (long i = 0; i < m; i++) { Z(a0) Z(a1) Z(a2) Z(a3) Z(a4) Z(a5) Z(a6) Z(a7) Z(a8) Z(a9) Z(a10) Z(a11) }
  double g = m * 12.0 * 32 / (now() - t0) / 1e9;
  __m512 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  printf("AVX-512 FMA: %.1f GFLOP/s per core (%.0f flop/cycle) [%g]\n", g, g / ghz,
         _mm512_reduce_add_ps(s));

  __m256 b2 = _mm256_set1_ps(0.999999f), c2 = _mm256_set1_ps(1e-7f);
  __m256 d0 = _mm256_set1_ps(iv[0]), d1 = _mm256_set1_ps(iv[1]), d2 = _mm256_set1_ps(iv[2]),
         d3 = _mm256_set1_ps(iv[3]), d4 = _mm256_set1_ps(iv[4]), d5 = _mm256_set1_ps(iv[5]),
         d6 = _mm256_set1_ps(iv[6]), d7 = _mm256_set1_ps(iv[7]), d8 = _mm256_set1_ps(iv[8]),
         d9 = _mm256_set1_ps(iv[9]), d10 = _mm256_set1_ps(iv[10]), d11 = _mm256_set1_ps(iv[11]);
  t0 = now();
  for (long i = 0; i < m; i++) { Y(d0) Y(d1) Y(d2) Y(d3) Y(d4) Y(d5) Y(d6) Y(d7) Y(d8) Y(d9) Y(d10) Y(d11) }
  g = m * 12.0 * 16 / (now() - t0) / 1e9;
  __m256 s2 = d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7 + d8 + d9 + d10 + d11;
  float out[8];
  _mm256_storeu_ps(out, s2);
  printf("AVX2 FMA:    %.1f GFLOP/s per core (%.0f flop/cycle) [%g]\n", g, g / ghz, out[0]);
  return 0;
}
