#!/usr/bin/env bash
# A robustness evaluation as a Slurm job array: `sbatch examples/slurm/robust-sharded.sh`
# submits 4 array tasks (one shard each; `--shard auto/4` reads SLURM_ARRAY_TASK_ID, minus
# SLURM_ARRAY_TASK_MIN) and a merge job that starts when all of them succeeded.
#SBATCH --job-name=robust-shard
#SBATCH --array=0-3
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
#SBATCH --output=parts/%x-%a.log
set -euo pipefail

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  # Run as a plain script: submit the array, then the merge after it.
  mkdir -p parts
  array=$(sbatch --parsable "$0")
  sbatch --dependency=afterok:"$array" --job-name=robust-merge --output=parts/merge.log \
    --wrap "./target/release/robust merge parts/shard-*-of-4.json --out reports/sharded"
  echo "submitted array $array and its merge"
  exit 0
fi

./target/release/robust eval --quiet --shard auto/4 --out parts/
