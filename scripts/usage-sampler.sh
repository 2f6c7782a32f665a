#!/usr/bin/env bash
# Memory and open files of a chaos run's processes over time, for soaks (docs/reliability.md):
#   scripts/usage-sampler.sh sample <out.tsv> <bin-dir> <log-dir> [interval-seconds]
#   scripts/usage-sampler.sh summary <out.tsv>
# `sample` reads /proc once per interval (default 60 s) for the workers, gateways and simulator
# started from <bin-dir> and the Temporal server whose database is under <log-dir>, and appends
# one line per process: time, role, pid, seconds alive, RSS (KiB), open file descriptors. It
# stops when its parent does. `summary` prints, per role, the longest-lived process with its first
# and last sample: a process killed and restarted by the run is a new one, so only a long life
# shows growth of its own.
set -euo pipefail

sample() {
  local out=$1 bin_dir=$2 log_dir=$3 interval=${4:-60} parent=$PPID
  printf 'time\trole\tpid\talive_s\trss_kib\tfds\n' > "$out"
  while kill -0 "$parent" 2>/dev/null; do
    local now pid cmd role rss fds alive
    now=$(date -u +%H:%M:%S)
    for pid in $(pgrep -f "$bin_dir/delivery-worker|$bin_dir/delivery-api|$bin_dir/partner-sim|$log_dir/temporal.db" || true); do
      cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || continue
      case "$cmd" in
        "$bin_dir/delivery-worker"*) role=worker ;;
        "$bin_dir/delivery-api"*) role=gateway ;;
        "$bin_dir/partner-sim"*) role=simulator ;;
        *"server start-dev"*) role=temporal ;;
        *) continue ;;
      esac
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
      fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
      alive=$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ')
      [ -n "$rss" ] && [ -n "$alive" ] && printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$now" "$role" "$pid" "$alive" "$rss" "$fds" >> "$out"
    done
    sleep "$interval"
  done
}

summary() {
  awk -F'\t' 'NR > 1 {
      key = $2 " " $3
      if (!(key in first)) { first[key] = $0; role[key] = $2 }
      last[key] = $0; alive[key] = $4
    }
    END {
      printf "%-10s %8s %10s %22s %18s\n", "role", "pid", "lived", "RSS first -> last", "fds first -> last"
      for (key in last) if (!(role[key] in best) || alive[key] > alive[best[role[key]]]) best[role[key]] = key
      for (r in best) {
        key = best[r]; split(first[key], f, "\t"); split(last[key], l, "\t")
        printf "%-10s %8s %9ds %9.1f -> %6.1f MiB %8d -> %d\n", r, f[3], l[4], f[5] / 1024, l[5] / 1024, f[6], l[6]
      }
    }' "$1"
}

case "${1:-}" in
  sample) shift; sample "$@" ;;
  summary) shift; summary "$@" ;;
  *) echo "usage: $0 sample <out.tsv> <bin-dir> <log-dir> [interval] | summary <out.tsv>" >&2; exit 2 ;;
esac
