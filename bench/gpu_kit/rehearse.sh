#!/usr/bin/env bash
# Rehearses bench/gpu_kit/session.sh on this machine as a device machine would run it, so that the
# one GPU call a task may get does not fail on the kit: a copy of what the device tool sends (the
# tracked and unignored files, plus .gpu), no network (`unshare -n`), Deno hidden from PATH, an
# empty DENO_DIR and HOME, small workloads and four times the limits (a CPU adapter is slow).
# Needs root (unshare, mount), a packed kit (pack.sh) and a Python with torch (HDPISSA_PYTHON;
# transformers and PEFT too for the extras step's check_with_hf.py).
#
#   bash bench/gpu_kit/rehearse.sh [OUT]     # logs in OUT (default /tmp/gpu_kit_rehearsal)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
out=$(realpath -m "${1:-/tmp/gpu_kit_rehearsal}")
[ -f "$root/.gpu/deno.xz" ] || {
  echo "no kit: run bench/gpu_kit/pack.sh first" >&2
  exit 2
}
copy=$(mktemp -d /tmp/gpu_kit_copy.XXXXXX)
home=$(mktemp -d /tmp/gpu_kit_home.XXXXXX)
trap 'rm -rf "$copy" "$home"' EXIT
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$copy" &&
  cp -r .gpu "$copy/")
rm -rf "$out" && mkdir -p "$out"
deno_path=$(command -v deno || true)
python=${HDPISSA_PYTHON:-/usr/bin/python3}
# In a mount namespace of its own, an empty file covers the deno binary.
unshare -mn bash -c '
  deno_path=$1 home=$2
  shift 2
  if [ -n "$deno_path" ]; then
    : >"$home/no-deno"
    mount --bind "$home/no-deno" "$(readlink -f "$deno_path")"
  fi
  deno --version >/dev/null 2>&1 && { echo "deno is still reachable" >&2; exit 1; }
  exec "$@"
' _ "$deno_path" "$home" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME="$home" OUT="$out" KIT_REHEARSE=1 KIT_STRETCH=4 \
  KIT_BUDGET_S="${KIT_BUDGET_S:-2400}" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" \
  HDPISSA_PYTHON="$python" bash "$copy/bench/gpu_kit/session.sh"
echo "logs: $out ($(ls "$out" | wc -l) files)"
