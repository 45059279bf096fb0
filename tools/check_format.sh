#!/usr/bin/env bash
# Fails if any C++ file differs from .clang-format (Google base, 100 columns).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
for f in $(git ls-files '*.cc' '*.h'); do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "format: $f differs from .clang-format (run clang-format -i $f)"
    bad=1
  fi
done
[ "$bad" -eq 0 ] && echo "format: ok"
exit "$bad"
