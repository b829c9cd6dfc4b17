#!/bin/sh
# Usage: gen.sh 3.11.7 > v3_11.rs   (needs pyenv's CPython of that version and gcc)
set -e
v="$1"; mm="${v%.*}"; root="$HOME/.pyenv/versions/$v"
inc="$root/include/python$mm"
out="$(mktemp)"
gcc -I"$inc" -I"$inc/internal" -o "$out" "$(dirname "$0")/offsets.c"
"$out"; rm -f "$out"
