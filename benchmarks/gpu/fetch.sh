#!/usr/bin/env bash
# Download, where the package index is reachable, the wheels a GPU host with JAX preinstalled lacks
# (benchmarks/gpu/wheels.txt, at the versions of constraints.txt), for the host's Python and platform.
# Usage: benchmarks/gpu/fetch.sh WHEEL_DIR [--python 3.12] [--platform manylinux_2_28_x86_64] [--physics warp]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
usage="usage: benchmarks/gpu/fetch.sh WHEEL_DIR [--python 3.12] [--platform manylinux_2_28_x86_64] [--physics warp]"
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { echo "$usage" >&2; exit 2; }
dest="$1"; shift
python_version=3.12; platform=manylinux_2_28_x86_64; warp=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ -n "${2:-}" ] || { echo "fetch.sh: --python needs a version, e.g. 3.12" >&2; exit 2; }
                  python_version="$2"; shift 2 ;;
        --platform) [ -n "${2:-}" ] || { echo "fetch.sh: --platform needs a tag, e.g. manylinux_2_28_x86_64" >&2; exit 2; }
                    platform="$2"; shift 2 ;;
        --physics) [ "${2:-}" = warp ] || { echo "fetch.sh: --physics takes only warp" >&2; exit 2; }; warp=1; shift 2 ;;
        *) echo "fetch.sh: unknown option $1; $usage" >&2; exit 2 ;;
    esac
done
pip="${PIP:-python3 -m pip}"
names=$(grep -v '^\s*#' "$here/wheels.txt" | sed '/^\s*$/d')
[ "$warp" = 1 ] && names="$names warp-lang"
specs=()
for name in $names; do
    # the locked version; pip normalises names (case, -, _ and .)
    key=$(echo "$name" | tr 'A-Z_.' 'a-z--')
    line=$(grep -v '^#' "$root/constraints.txt" | awk -F'==' -v k="$key" '{n=tolower($1); gsub(/[_.]/, "-", n); if (n == k) print}')
    [ -n "$line" ] || { echo "fetch.sh: $name is not in constraints.txt" >&2; exit 2; }
    specs+=("$line")
done
mkdir -p "$dest"
$pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$python_version" \
    --platform "$platform" --platform any --dest "$dest" "${specs[@]}"
size=$(du -sm "$dest" | cut -f1)
echo "fetch.sh: ${#specs[@]} wheels for Python $python_version on $platform in $dest ($size MiB)"
[ "$warp" = 1 ] || echo "fetch.sh: warp-lang left out (149 MB); for --physics warp fetch again with --physics warp"
