/* The shared library of plt_calls.c: one tiny function, so that the call's PLT stub
   holds a share of the samples of its own. */
int tiny(int x) { return x + 1; }
