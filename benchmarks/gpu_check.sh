#!/usr/bin/env bash
# gpu_check.sh: the prepared GPU check of issue 14 (item 4). Under 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh [OUT]          # on a machine with CUDA (default OUT: benchmarks/results/speed-gpu)
#   bash benchmarks/gpu_check.sh --cpu [OUT]    # dry run of every step on the CPU, tiny sizes (default OUT: /tmp/gpu-check-cpu)
#
# The step limits add up to 1050 s (480 s for steps 1-7, 570 s for the grouped step 8); a step that hits its limit is cut and the rest run.
# Run from the repository root with the project's environment active (pip install -e ".[dev]").
# Steps, each with its own time limit so one slow step cannot eat the budget; a failing step is
# recorded and the script goes on (its exit status is the number of failed steps):
#
#   1. env          nvidia-smi, torch/CUDA versions, which SDPA backends are enabled       -> env.txt
#   2. gpu tests    pytest tests/test_gpu_paths.py (the CUDA-only tests run here: fused
#                   kernels only for scaled-dot/dot/general, Flex == reference with grads,
#                   a bf16-mixed cell on the GPU)                                           -> pytest-gpu-paths.txt
#   3. kernels      which SDPA kernel scaled-dot takes without weights (no mask, causal mask)
#                   in fp32/bf16: each backend tried alone                                  -> sdpa-kernels.txt
#   4. conformance  the conformance kit on CUDA for every registered variant: the kit builds
#                   its tensors and modules with torch's default device, set to cuda here   -> conformance-cuda.jsonl, .txt
#   5. speed        attnzoo speed --device cuda at T = 1k, 2k, 4k, 8k, 16k (TFLOP/s beside the
#                   times where speed.py reports them)                                      -> speed/ (speed.md, .csv, .png)
#   6. flex vs sdpa scaled-dot (4 heads, width 256, batch 4) with a causal mask, the
#                   Transformer's case, impl=flex against impl=sdpa, forward+backward: the
#                   figure that decides dot.FLEX_MIN_KEYS (attnzoo speed passes no mask)     -> flex-vs-sdpa.csv
#   7. smoke bench  attnzoo bench --preset smoke --accelerator gpu --jobs 1                 -> bench-smoke/ (results.jsonl)
#   8. grouped      attnzoo bench --preset default --accelerator gpu --group auto --jobs 14 (its grid
#                   wall time beside the ungrouped 292 s), then benchmarks/grouped.py on MQAR -> bench-grouped/, grouped/
#
# Every step's stdout and stderr go to OUT/<step>.log; OUT/summary.txt lists each step with its
# status and seconds. Commit OUT (benchmarks/results/speed-gpu/) when a session is lent a GPU.
set -u

CPU=0
if [[ "${1:-}" == "--cpu" ]]; then
  CPU=1
  shift
fi
if [[ $CPU == 1 ]]; then
  OUT="${1:-/tmp/gpu-check-cpu}"
  DEVICE=cpu
  ACCEL=cpu
  LENGTHS=64,128
  SPEED_FLAGS=(--repeats 1 --min-sample-ms 0 --max-seconds 5 --threads 2)
else
  OUT="${1:-benchmarks/results/speed-gpu}"
  DEVICE=cuda
  ACCEL=gpu
  LENGTHS=1024,2048,4096,8192,16384
  SPEED_FLAGS=(--repeats 3 --max-seconds 20)
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
FAILED=0
START=$(date +%s)

if [[ $CPU == 0 ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: torch sees no CUDA device; use --cpu for a dry run" >&2
  exit 2
fi

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, note the outcome
step() {
  local name="$1" limit="$2"
  shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local status=ok
  if [[ $rc == 124 || $rc == 137 ]]; then status="timed out"; elif [[ $rc != 0 ]]; then status="failed (rc $rc)"; fi
  [[ $status == ok ]] || FAILED=$((FAILED + 1))
  printf '%-14s %-16s %4ss\n' "$name" "$status" "$dt" | tee -a "$SUMMARY"
  tail -n 3 "$OUT/$name.log" | sed 's/^/    /'
}

# 1. environment
step env 30 bash -c "
  (nvidia-smi || echo 'no nvidia-smi') 2>&1
  $PY - <<'EOF'
import platform, torch
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda)
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), 'capability', torch.cuda.get_device_capability(0))
    b = torch.backends.cuda
    print('flash', b.flash_sdp_enabled(), 'mem_efficient', b.mem_efficient_sdp_enabled(),
          'cudnn', b.cudnn_sdp_enabled(), 'math', b.math_sdp_enabled())
from attnzoo.mechanisms.dot import flex_available, FLEX_MIN_KEYS
print('flex_attention', flex_available(), 'FLEX_MIN_KEYS', FLEX_MIN_KEYS)
EOF
"
cp "$OUT/env.log" "$OUT/env.txt"

# 2. the GPU-path tests (CUDA-only ones skip on the CPU)
step gpu-tests 90 "$PY" -m pytest -q -p no:randomly -p no:cacheprovider tests/test_gpu_paths.py -rs
cp "$OUT/gpu-tests.log" "$OUT/pytest-gpu-paths.txt"

# 3. which SDPA kernel scaled-dot reaches
step kernels 30 "$PY" - "$DEVICE" <<'EOF'
import sys, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from attnzoo.contract import causal_mask
from attnzoo.registry import create_attention

device = sys.argv[1]
backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
dtypes = [torch.float32, torch.bfloat16] if device == "cuda" else [torch.float32]
t = 1024 if device == "cuda" else 64
for dtype in dtypes:
    m = create_attention("scaled-dot", 64, impl="sdpa").to(device, dtype)
    for masked in (False, True):
        x = torch.randn(2, t, 64, device=device, dtype=dtype, requires_grad=True)
        mask = causal_mask(t, device=device)[None].expand(2, t, t) if masked else None
        ok = []
        for b in backends:
            try:
                with sdpa_kernel([b]):
                    m(x, mask=mask).context.float().sum().backward()
                ok.append(b.name)
            except RuntimeError:
                pass
        print(f"{device} {str(dtype):15s} mask={'causal' if masked else 'none':6s} kernels that run: {', '.join(ok)}")
EOF
cp "$OUT/kernels.log" "$OUT/sdpa-kernels.txt"

# 4. the conformance kit on the device, every registered variant
step conformance 90 "$PY" - "$DEVICE" "$OUT/conformance-$DEVICE.jsonl" <<'EOF'
import json, sys, torch
from attnzoo.registry import list_attention
from attnzoo.testing import check_attention

device, path = sys.argv[1], sys.argv[2]
torch.set_default_device(device)  # the kit's randn/zeros and the variants' parameters land on the device
failed = 0
with open(path, "w") as f:
    for name in list_attention():
        try:
            report = check_attention(name)
            results = report.results
        except Exception as exc:  # noqa: BLE001 - one variant's crash is a line, not the end of the step
            f.write(json.dumps({"variant": name, "name": "kit", "status": "error", "message": repr(exc)}) + "\n")
            failed += 1
            print(f"{name:12s} kit crashed: {exc!r}")
            continue
        bad = [r for r in results if r.status == "failed"]
        failed += bool(bad)
        for r in results:
            f.write(json.dumps({"variant": name, "name": r.name, "status": r.status, "message": r.message}) + "\n")
        print(f"{name:12s} {len(results) - len(bad)}/{len(results)} not failed" + "".join(f"\n    FAILED {r.name}: {r.message[:200]}" for r in bad))
sys.exit(1 if failed else 0)
EOF
cp "$OUT/conformance.log" "$OUT/conformance-$DEVICE.txt"

# 5. attnzoo speed on the device
step speed 120 attnzoo speed --device "$DEVICE" --lengths "$LENGTHS" "${SPEED_FLAGS[@]}" --out "$OUT/speed"

# 6. scaled-dot with a causal mask (what the Transformer passes): impl=flex against impl=sdpa.
#    attnzoo speed passes no mask, so this is timed here; it decides dot.FLEX_MIN_KEYS.
step flex-vs-sdpa 60 "$PY" - "$DEVICE" "$LENGTHS" "$OUT/flex-vs-sdpa.csv" <<'EOF'
import sys, time, torch
from attnzoo.contract import causal_mask
from attnzoo.registry import create_attention

device, lengths, path = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3]
cuda = device == "cuda"
train = cuda  # Flex has no backward on the CPU: the dry run times the forward only
b, h, d = 4, 4, 64
sync = torch.cuda.synchronize if cuda else (lambda: None)
csv = open(path, "w", buffering=1)  # line-buffered: a timed-out step keeps its rows
csv.write("impl,T,ms,pass\n")
for t in lengths:
    mask = causal_mask(t, device=device)[None].expand(b, t, t)
    x = torch.randn(b, t, d * h, device=device, requires_grad=train)
    for impl in ("sdpa", "flex"):
        m = create_attention("scaled-dot", d * h, num_heads=h, impl=impl).to(device)
        def once():
            out = m(x, mask=mask).context
            if train:
                out.sum().backward()
        try:
            with torch.set_grad_enabled(train):
                once(); once(); sync()  # compile and warm up
                n, t0 = 0, time.perf_counter()
                while n < 3 or time.perf_counter() - t0 < 0.5:
                    once(); n += 1
                sync()
                ms = 1e3 * (time.perf_counter() - t0) / n
            csv.write(f"{impl},{t},{ms:.3f},{'fwd+bwd' if train else 'fwd'}\n")
            print(f"T={t:6d} {impl:5s} {ms:9.3f} ms ({'fwd+bwd' if train else 'fwd'})", flush=True)
        except Exception as exc:  # noqa: BLE001 - a row, not the end of the step
            csv.write(f"{impl},{t},,error: {type(exc).__name__}\n")
            print(f"T={t:6d} {impl:5s} error: {exc!r}"[:300], flush=True)
EOF

# 7. the smoke preset on the accelerator
step bench-smoke 60 attnzoo bench --preset smoke --accelerator "$ACCEL" --jobs 1 --no-report --out "$OUT/bench-smoke"

# 8. grouped cells (issue 20): the default preset with --group auto (seeds/lrs of a task-backbone-variant
#    as one vmapped model) beside the ungrouped figure measured on the H200 (--jobs 14, grid 292 s,
#    ../shared/measurements/gpu-h200-2026-12-04/); then benchmarks/grouped.py on MQAR (cells/s grouped
#    vs one at a time, 400 steps). The dry run: the smoke preset, and MQAR at 20 steps.
if [[ $CPU == 1 ]]; then
  GROUP_PRESET=(--preset smoke --jobs 2); GROUP_STEPS=20
else
  GROUP_PRESET=(--preset default --jobs 14); GROUP_STEPS=400
fi
step bench-grouped 420 bash -c "
  t0=\$(date +%s)
  attnzoo bench ${GROUP_PRESET[*]} --accelerator $ACCEL --group auto --no-report --out '$OUT/bench-grouped' \
    && echo \"grouped grid wall: \$(( \$(date +%s) - t0 )) s (ungrouped on the H200, --jobs 14: 292 s)\"
"
step grouped-mqar 150 "$PY" benchmarks/grouped.py --tasks mqar --variants scaled-dot,content,none \
  --steps "$GROUP_STEPS" --accelerator "$ACCEL" --out "$OUT/grouped"

echo "total $(( $(date +%s) - START ))s, $FAILED step(s) not ok" | tee -a "$SUMMARY"
exit "$FAILED"
