#!/usr/bin/env bash
# Issue 22's compatibility sweep: twelve torchvision families, scripted and traced, through cnnviz
# (units and channel axes, receptive fields against input-gradient supports, actmax/deconv/invert/
# dissect on one layer). Writes OUT/matrix.json and OUT/matrix.md; exits 1 on a hard failure.
#   scripts/compat_sweep.sh [--size S] [--archs a,b] [--formats script,trace] [--out DIR]
#                                 (all twelve, both formats, 128 px: about 30 min on 2 cores)
#   scripts/compat_sweep.sh --fast          (the CI subset at 64 px: under 4 min on 2 cores)
# Uses $CNNVIZ_BIN (default build/apps/cnnviz), $CNNVIZ_CONCEPTS (default build/fixtures/concepts).
# See models/compat_check.py for the checks and what counts as a failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec /usr/bin/python3 "$root/models/compat_check.py" "$@"
