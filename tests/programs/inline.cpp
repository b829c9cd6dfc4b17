// C++ with an inlined callee: `kernel` is always inlined into ns::Solver<double>::run,
// which does all the work. Demangled names and inlined frames are the ground truth.
#include <cstdlib>
#include <cstdio>

namespace ns {
static volatile double sink;

static inline __attribute__((always_inline)) void kernel(long n) {
    for (long i = 0; i < n; i++) sink = sink + 1.0;
}

template <class T> struct Solver {
    __attribute__((noinline)) void run(long rounds) {
        for (long r = 0; r < rounds; r++) kernel(100000);
    }
};
}  // namespace ns

int main(int argc, char **argv) {
    long rounds = argc > 1 ? std::atol(argv[1]) : 2000;
    ns::Solver<double> s;
    s.run(rounds);
    std::printf("%f\n", (double)ns::sink);
    return 0;
}
