// Ground truth: sweep<double> (a template constrained by std::enable_if, the usual C++11
// idiom, whose mangled name cpp_demangle 0.5 cannot read) and plain() do the same work:
// 1:1, each under its demangled name. Rounds of 50000..149999 in a fixed pseudo-random
// order (as in hot.c): rounds of one length alias with the sampling period.
#include <cstdio>
#include <cstdlib>
#include <type_traits>

static volatile double sink;

template <class T>
__attribute__((noinline)) typename std::enable_if<std::is_floating_point<T>::value, void>::type
sweep(const T *x, long n) {
    for (long i = 0; i < n; i++) sink = sink + x[i & 7];
}

__attribute__((noinline)) void plain(const double *x, long n) {
    for (long i = 0; i < n; i++) sink = sink + x[i & 7];
}

int main(int argc, char **argv) {
    const double x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    long rounds = argc > 1 ? std::atol(argv[1]) : 1000;
    unsigned long long u = 1;
    for (long r = 0; r < rounds; r++) {
        u = u * 6364136223846793005ULL + 1442695040888963407ULL;
        long n = 50000 + (long)((u >> 33) % 100000);
        sweep(x, n);
        plain(x, n);
    }
    std::printf("%f\n", (double)sink);
    return 0;
}
