// C++ lambdas (inlined; GCC's DWARF gives their operator() no line, its closure type
// has it): thread A's lambda runs 3x the sweeps of thread B's (totals 75% / 25%);
// the lambda in sim::Grid::sweep (a method defined outside its class) does the work.
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace sim {
struct Grid {
    std::vector<double> v = std::vector<double>(1 << 14, 1.0);
    double sweep(long iters);
};

double Grid::sweep(long iters) {
    auto relax = [this](double w) { double s = 0; for (auto &x : v) { x = x * w + 0.25; s += x; } return s; };  // RELAX
    double s = 0;
    for (long k = 0; k < iters; k++) s += relax(0.5);
    return s;
}
}  // namespace sim

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    double out[2];
    std::thread a([&] { sim::Grid g; out[0] = g.sweep(3 * n); });  // LAMBDA_A
    std::thread b([&] { sim::Grid g; out[1] = g.sweep(n); });  // LAMBDA_B
    a.join();
    b.join();
    std::printf("%f\n", out[0] + out[1]);
}
