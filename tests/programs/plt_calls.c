/* Ground truth: main calls tiny() of libplt_lib.so through its PLT stub, in a loop that
   does nothing else: the samples split between main, the stub `tiny@plt` (one indirect
   jump, about a fourth of them) and tiny. The stub's share is perf script's count of
   samples in the executable outside main; it has the name perf and objdump give it. */
#include <stdio.h>
#include <stdlib.h>

int tiny(int x);

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 300000000;
    int x = 0;
    for (long i = 0; i < n; i++) x = tiny(x);
    printf("%d\n", x);
    return 0;
}
