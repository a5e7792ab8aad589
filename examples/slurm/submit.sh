#!/usr/bin/env bash
# Hash DATA on a Slurm cluster in N shards and lock it in PROJECT's cairn.lock:
#
#   submit.sh DATA N PARTS PROJECT [NAME [LOCK_ARG...]]
#
# submits the array hash-shards.sbatch (--array=1-N) and merge-and-lock.sbatch, which waits for
# every task of the array (--dependency=afterany) and merges. Prints the two job ids, the array's
# first: `squeue -j ID` follows them; the logs go to PARTS/slurm-*.out, the digest to the merge
# job's log. NAME defaults to DATA's last component; LOCK_ARGs go to `cairn lock`.
#
# With CAIRN_SLURM_LISTING=1 a job of its own (list.sbatch) lists DATA once first, and every
# shard reads that listing instead of walking the whole tree (worth it with millions of files on
# a network filesystem); its id goes to stderr.
#
# PARTS must not exist or be empty, so that no part of an earlier run is merged.
# Options for both jobs (partition, time, account, CPUs per task) go in the SBATCH_*
# environment variables sbatch reads (SBATCH_PARTITION, SBATCH_TIMELIMIT, SBATCH_ACCOUNT, ...),
# or edit the #SBATCH lines of the job scripts.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: $0 DATA N PARTS PROJECT [NAME [LOCK_ARG...]]" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
data="$1"
n="$2"
parts="$3"
project="$4"
name="${5:-}"
shift $(($# < 5 ? $# : 5))

case "$n" in
'' | *[!0-9]* | 0*)
    echo "submit: N must be a whole number of shards, 1 or more (got '$n')" >&2
    exit 2
    ;;
esac
[ -d "$data" ] || { echo "submit: $data is not a directory" >&2; exit 2; }
[ -d "$project" ] || { echo "submit: $project is not a directory" >&2; exit 2; }
if [ -e "$parts" ] && [ -n "$(ls -A "$parts")" ]; then
    echo "submit: $parts is not empty: give an empty or new directory for the parts," \
        "so that no part of an earlier run is merged" >&2
    exit 2
fi
# The jobs run elsewhere, in other directories: give them absolute paths.
data="$(cd "$data" && pwd)"
project="$(cd "$project" && pwd)"
mkdir -p "$parts"
parts="$(cd "$parts" && pwd)"
[ -n "$name" ] || name="$(basename "$data")"

shard_args=("$data" "$parts")
after=()
if [ "${CAIRN_SLURM_LISTING:-}" = 1 ]; then
    listing="$parts/$(basename "$data").listing"
    list="$(sbatch --parsable --export=ALL --output="$parts/slurm-list-%j.out" \
        "$here/list.sbatch" "$data" "$listing")"
    list="${list%%;*}"
    echo "submit: job $list lists $data once into $listing; the shards read it" >&2
    shard_args=("$data" "$parts" "$n" "$listing")
    # If the listing fails, the array is cancelled (not left pending forever) and the merge job
    # names every shard missing.
    after=(--dependency="afterok:$list" --kill-on-invalid-dep=yes)
fi
array="$(sbatch --parsable --export=ALL --array="1-$n" ${after[@]+"${after[@]}"} \
    --output="$parts/slurm-hash-%A_%a.out" \
    "$here/hash-shards.sbatch" "${shard_args[@]}")"
array="${array%%;*}"
merge="$(sbatch --parsable --export=ALL --dependency="afterany:$array" \
    --output="$parts/slurm-merge-%j.out" \
    "$here/merge-and-lock.sbatch" "$data" "$n" "$parts" "$project" "$name" "$array" "$@")"
merge="${merge%%;*}"
echo "$array $merge"
echo "submit: array $array hashes $data in $n shards; job $merge merges and locks it as" \
    "$name in $project (log: $parts/slurm-merge-$merge.out)" >&2
