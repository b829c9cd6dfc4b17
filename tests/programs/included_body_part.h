/* The included part of included_body.c's mixed(): three times the work of its own. */
for (long i = 0; i < 3 * n; i++) sink += 2.0;
