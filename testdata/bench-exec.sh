#!/usr/bin/env bash
# bench-exec.sh BATCHPIPE — the exec sink's batch rate next to GNU parallel
# --pipe, split --filter and xargs, measured in the same run on the same
# input.
#
#   batchpipe -n SIZE exec -- wc -l          vs split -l SIZE --filter='wc -l'
#   batchpipe -n SIZE -j 2 exec -- wc -l     vs parallel --pipe -N SIZE -j 2 wc -l
#   batchpipe -n SIZE exec --args -- true    vs xargs -d '\n' -n SIZE true
#
# Targets: ≥10× parallel's batches/s and ≥1.5× split's at every size;
# --args within 1.2× of xargs's time.
#
# Every batch costs a fork/exec (parallel's about 90 ms), so the input is
# SIZE×BATCHES lines, at most 200,000: the same for every tool at a size.
# BATCHES (default 100) and ARGS_BATCHES (default 200) set the work. Each
# figure is the best of REPS runs (default 3; parallel, the slow one, runs
# once), after one warm-up run of each command, to damp a busy machine.
set -euo pipefail

bp=${1:?usage: bench-exec.sh path/to/batchpipe}
bp=$(cd "$(dirname "$bp")" && pwd)/$(basename "$bp")
batches=${BATCHES:-100}
args_batches=${ARGS_BATCHES:-200}
reps=${REPS:-3}
max_lines=200000
sizes=(1 10 100 1000)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

if ! command -v parallel >/dev/null; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "GNU parallel missing: installing it with apt-get"
		apt-get update -qq >/dev/null && apt-get install -y -qq parallel >/dev/null || true
	fi
fi
have_parallel=1
if ! command -v parallel >/dev/null; then
	have_parallel=0
	echo "GNU parallel not found and not installable here: its column is skipped"
fi

ns() { date +%s%N; }

# timed NAME LINES BATCHES CMD... runs CMD with in.LINES as stdin, checks
# that its per-batch counts add up, and prints the seconds taken.
timed() {
	local name=$1 lines=$2 want=$3
	shift 3
	local t0 t1
	t0=$(ns)
	"$@" <"in.$lines" >out 2>err || {
		echo "$name failed:" >&2
		cat err >&2
		exit 1
	}
	t1=$(ns)
	local got sum
	got=$(wc -l <out)
	sum=$(awk '{s += $1} END {print s + 0}' out)
	if [[ $got != "$want" || $sum != "$lines" ]]; then
		echo "$name: $got outputs summing to $sum, want $want summing to $lines" >&2
		exit 1
	fi
	awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f", d / 1e9}'
}

# best N NAME LINES BATCHES CMD... is the fastest of N timed runs.
best() {
	local n=$1 b t
	shift
	b=$(timed "$@")
	for ((i = 1; i < n; i++)); do
		t=$(timed "$@")
		b=$(awk -v a="$b" -v t="$t" 'BEGIN {print (t < a) ? t : a}')
	done
	echo "$b"
}

rate() { awk -v n="$1" -v s="$2" 'BEGIN {printf "%.0f", n / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
meets() { awk -v r="$1" -v t="$2" 'BEGIN {print (r >= t) ? "ok" : "MISSED"}'; }

# Warm up: binaries and their libraries into the page cache.
seq 10 >in.10
timed warm-up 10 1 "$bp" -q exec -- wc -l >/dev/null
timed warm-up 10 1 split -l 10 --filter='wc -l' >/dev/null
timed warm-up 10 1 sh -c "xargs true && echo 10" >/dev/null
if ((have_parallel)); then timed warm-up 10 1 parallel --pipe -N 10 wc -l >/dev/null; fi

echo "exec sink: batches/s ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%5s %7s %7s | %10s %10s %10s %10s | %13s %10s\n' \
	size lines batches batchpipe bp-j2 parallel-j2 split 'bp-j2/parallel' 'bp/split'
reduced=0
for size in "${sizes[@]}"; do
	lines=$((size * batches))
	if ((lines > max_lines)); then lines=$max_lines; fi
	if ((lines < max_lines)); then reduced=1; fi
	n=$(((lines + size - 1) / size))
	seq "$lines" >"in.$lines"

	t_bp=$(best "$reps" batchpipe "$lines" "$n" "$bp" -q -n "$size" -t 0 exec -- wc -l)
	t_bp2=$(best "$reps" batchpipe-j2 "$lines" "$n" "$bp" -q -n "$size" -t 0 -j 2 exec -- wc -l)
	t_split=$(best "$reps" split "$lines" "$n" split -l "$size" --filter='wc -l')
	r_bp=$(rate "$n" "$t_bp")
	r_bp2=$(rate "$n" "$t_bp2")
	r_split=$(rate "$n" "$t_split")
	r_par=- vs_par=-
	if ((have_parallel)); then
		t_par=$(timed parallel "$lines" "$n" parallel --pipe -N "$size" -j 2 wc -l)
		r_par=$(rate "$n" "$t_par")
		vs_par="$(ratio "$r_bp2" "$r_par")x $(meets "$(ratio "$r_bp2" "$r_par")" 10)"
	fi
	vs_split="$(ratio "$r_bp" "$r_split")x $(meets "$(ratio "$r_bp" "$r_split")" 1.5)"
	printf '%5s %7s %7s | %10s %10s %10s %10s | %13s %10s\n' \
		"$size" "$lines" "$n" "$r_bp" "$r_bp2" "$r_par" "$r_split" "$vs_par" "$vs_split"
done
if ((reduced)); then
	echo "(fewer than $max_lines lines at small sizes: $batches batches per size, the same input for every tool)"
fi

echo
echo "exec --args vs xargs, running true: seconds (lower is better)"
printf '%5s %7s %7s | %10s %10s | %13s\n' size lines runs batchpipe xargs 'bp/xargs'
for size in "${sizes[@]}"; do
	lines=$((size * args_batches))
	if ((lines > max_lines)); then lines=$max_lines; fi
	n=$(((lines + size - 1) / size))
	seq "$lines" >"in.$lines"
	# true prints nothing: count the work with one echo at the end instead.
	t_bp=$(best "$reps" batchpipe-args "$lines" 1 sh -c "\"$bp\" -q -n $size -t 0 exec --args -- true && echo $lines")
	t_x=$(best "$reps" xargs "$lines" 1 sh -c "xargs -d '\n' -n $size true && echo $lines")
	r=$(ratio "$t_bp" "$t_x")
	ok=$(awk -v r="$r" 'BEGIN {print (r <= 1.2) ? "ok" : "MISSED"}')
	printf '%5s %7s %7s | %10s %10s | %12sx %s\n' "$size" "$lines" "$n" "$t_bp" "$t_x" "$r" "$ok"
done
