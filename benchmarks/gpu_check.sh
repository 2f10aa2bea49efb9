#!/usr/bin/env bash
# gpu_check.sh: the prepared GPU check of issue 14 (item 4). Under 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh [OUT]          # on a machine with CUDA (default OUT: benchmarks/results/speed-gpu)
#   bash benchmarks/gpu_check.sh --cpu [OUT]    # dry run of every step on the CPU, tiny sizes (default OUT: /tmp/gpu-check-cpu)
#   bash benchmarks/gpu_check.sh --grouped [OUT] # env + the grouped steps 9-10 only (default OUT: benchmarks/results/grouped-gpu);
#                                                # --cpu --grouped dry-runs them. Limits 20 + 570 s: a session with 15 minutes
#                                                # of device time runs the kernel check or this one per machine start, not both.
#
# The step limits add up to 480 s (8 minutes); a step that hits its limit is cut and the rest run.
# (The H200 run of 2026-12-04 took 245 s in all, its flex step cut at 60 s.)
# Run from the repository root with the project's environment active (pip install -e ".[dev,triton]";
# without the [triton] extra the fused additive steps and tests skip or report it).
# Steps, each with its own time limit so one slow step cannot eat the budget; a failing step is
# recorded and the script goes on (its exit status is the number of failed steps):
#
#   1. env          nvidia-smi, torch/CUDA versions, which SDPA backends are enabled       -> env.txt
#   2. gpu tests    pytest tests/test_gpu_paths.py, test_additive_triton.py, test_causal_flag.py,
#                   test_kit_device.py (CUDA-only tests run here: fused kernels only for
#                   scaled-dot/dot/general, Flex == reference with grads, a bf16-mixed cell,
#                   the compiled additive kernel == the chunked path in fp32/bf16; the kit on
#                   every variant and the interpreter cases are left to steps 4 and the CPU) -> pytest-gpu-paths.txt
#   3. kernels      which SDPA kernel scaled-dot takes without weights (no mask, causal mask
#                   tensor, causal tagged = is_causal) in fp32/bf16: each backend alone      -> sdpa-kernels.txt
#   4. conformance  the conformance kit on the device for every registered variant
#                   (check_attention(name, device=...): modules, inputs, generators there)  -> conformance-cuda.jsonl, .txt
#   5. speed        attnzoo speed --device cuda at T = 1k, 2k, 4k, 8k, 16k (TFLOP/s beside the
#                   times where speed.py reports them)                                      -> speed/ (speed.md, .csv, .png)
#   6. auto-table-flex  scaled-dot (4 heads, width 256, batch 4), impl=flex against impl=sdpa,
#                   forward+backward, fp32 and bf16, mask kinds "causal" (tagged: SDPA is_causal,
#                   flash-eligible) and "masked" (causal + one padded key: a mask tensor)    -> auto-table.csv
#   7. auto-table-additive  the fused additive Triton kernel against the chunked path (B=4,
#                   width 64, fp32 and bf16, forward+backward) with peak memory, SDPA beside
#                   it; appends its rows to auto-table.csv                                   -> additive-triton.csv
#   8. smoke bench  attnzoo bench --preset smoke --accelerator gpu --jobs 1                 -> bench-smoke/ (results.jsonl)
#   9. grouped      (--grouped) attnzoo bench --preset default --accelerator gpu --group auto --jobs 14, its
#                   grid wall time beside the ungrouped 292 s of 2026-12-04                   -> bench-grouped/
#  10. grouped-mqar (--grouped) benchmarks/grouped.py on MQAR: cells/s grouped vs one at a time -> grouped/
#
# auto-table.csv decides what impl="auto" takes (attnzoo/autotable.py, benchmarks/auto_table.py):
# copy it to benchmarks/results/speed-gpu/ and update AUTO_MIN_KEYS (tests/test_autotable.py checks).
#
# Every step's stdout and stderr go to OUT/<step>.log; OUT/summary.txt lists each step with its
# status and seconds. Commit OUT (benchmarks/results/speed-gpu/) when a session is lent a GPU.
set -u

CPU=0
GROUPED=0
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --grouped) GROUPED=1 ;;
    *) echo "gpu_check.sh: unknown option $1 (--cpu, --grouped)" >&2; exit 2 ;;
  esac
  shift
done
if [[ $CPU == 1 ]]; then
  OUT="${1:-/tmp/gpu-check-cpu}"
  DEVICE=cpu
  ACCEL=cpu
  LENGTHS=64,128
  SPEED_FLAGS=(--repeats 1 --min-sample-ms 0 --max-seconds 5 --threads 2)
else
  OUT="${1:-benchmarks/results/$([[ $GROUPED == 1 ]] && echo grouped-gpu || echo speed-gpu)}"
  DEVICE=cuda
  ACCEL=gpu
  LENGTHS=1024,2048,4096,8192  # 16384 left out: the fused-additive and causal rows need the time
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
step env 20 bash -c "
  (nvidia-smi || echo 'no nvidia-smi') 2>&1
  $PY - <<'EOF'
import platform, torch
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda)
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), 'capability', torch.cuda.get_device_capability(0))
    b = torch.backends.cuda
    print('flash', b.flash_sdp_enabled(), 'mem_efficient', b.mem_efficient_sdp_enabled(),
          'cudnn', b.cudnn_sdp_enabled(), 'math', b.math_sdp_enabled())
from attnzoo.mechanisms.dot import flex_available
from attnzoo.mechanisms.additive import triton_available
from attnzoo.autotable import AUTO_MIN_KEYS
print('flex_attention', flex_available(), 'triton', triton_available(), 'AUTO_MIN_KEYS', AUTO_MIN_KEYS)
EOF
"
cp "$OUT/env.log" "$OUT/env.txt"

if [[ $GROUPED == 0 ]]; then
# 2. the GPU-path tests (CUDA-only ones skip on the CPU)
step gpu-tests 110 "$PY" -m pytest -q -p no:randomly -p no:cacheprovider tests/test_gpu_paths.py \
  tests/test_additive_triton.py tests/test_causal_flag.py tests/test_kit_device.py -k "not every_variant_passes_on_cuda and not interpreter_cases" -rs
cp "$OUT/gpu-tests.log" "$OUT/pytest-gpu-paths.txt"

# 3. which SDPA kernel scaled-dot reaches
step kernels 20 "$PY" - "$DEVICE" <<'EOF'
import sys, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from attnzoo.contract import causal_mask, mark_causal
from attnzoo.registry import create_attention

device = sys.argv[1]
backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
dtypes = [torch.float32, torch.bfloat16] if device == "cuda" else [torch.float32]
t = 1024 if device == "cuda" else 64
for dtype in dtypes:
    m = create_attention("scaled-dot", 64, impl="sdpa").to(device, dtype)
    for masked in ("none", "causal", "tagged"):
        x = torch.randn(2, t, 64, device=device, dtype=dtype, requires_grad=True)
        mask = None if masked == "none" else causal_mask(t, device=device)[None].expand(2, t, t)
        if masked == "tagged":
            mask = mark_causal(mask)  # the backbones' causal mask without padding: SDPA is_causal
        ok = []
        for b in backends:
            try:
                with sdpa_kernel([b]):
                    m(x, mask=mask).context.float().sum().backward()
                ok.append(b.name)
            except RuntimeError:
                pass
        print(f"{device} {str(dtype):15s} mask={masked:6s} kernels that run: {', '.join(ok)}")
EOF
cp "$OUT/kernels.log" "$OUT/sdpa-kernels.txt"

# 4. the conformance kit on the device, every registered variant
step conformance 70 "$PY" - "$DEVICE" "$OUT/conformance-$DEVICE.jsonl" <<'EOF'
import json, sys, torch
from attnzoo.registry import list_attention
from attnzoo.testing import check_attention

device, path = sys.argv[1], sys.argv[2]
failed = 0
with open(path, "w") as f:
    for name in list_attention():
        try:
            report = check_attention(name, device=device)  # modules, inputs and generators on the device
            results = report.results
        except Exception as exc:  # noqa: BLE001 - one variant's crash is a line, not the end of the step
            f.write(json.dumps({"variant": name, "name": "kit", "status": "error", "message": repr(exc)}) + "\n")
            failed += 1
            print(f"{name:12s} kit crashed: {exc!r}")
            continue
        bad = [r for r in results if r.status == "failed"]
        failed += bool(bad)
        for r in results:
            f.write(json.dumps({"variant": name, "device": report.device, "name": r.name, "status": r.status,
                                "message": r.message}) + "\n")
        print(f"{name:12s} on {report.device}: {len(results) - len(bad)}/{len(results)} not failed" + "".join(f"\n    FAILED {r.name}: {r.message[:200]}" for r in bad))
sys.exit(1 if failed else 0)
EOF
cp "$OUT/conformance.log" "$OUT/conformance-$DEVICE.txt"

# 5. attnzoo speed on the device
step speed 90 attnzoo speed --device "$DEVICE" --lengths "$LENGTHS" "${SPEED_FLAGS[@]}" --out "$OUT/speed"

# 6. impl=flex against impl=sdpa per dtype and mask kind: the rows that decide autotable.AUTO_MIN_KEYS.
#    "causal": the tagged mask (SDPA is_causal); "masked": causal plus one padded key (a mask tensor).
step auto-table-flex 55 "$PY" - "$DEVICE" "$LENGTHS" "$OUT/auto-table.csv" <<'EOF'
import sys, time, torch
from attnzoo.autotable import CSV_FIELDS
from attnzoo.contract import causal_mask, mark_causal
from attnzoo.registry import create_attention

device, lengths, path = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3]
cuda = device == "cuda"
lengths = [t for t in lengths if t <= 4096][:2] if cuda else lengths  # Flex compiles per shape: two lengths
train = cuda  # Flex has no backward on the CPU: the dry run times the forward only
b, h, d = 4, 4, 64
sync = torch.cuda.synchronize if cuda else (lambda: None)
csv = open(path, "w", buffering=1)  # line-buffered: a timed-out step keeps its rows
csv.write(",".join(CSV_FIELDS) + "\n")


def timed(m, x, mask):
    def once():
        out = m(x, mask=mask).context
        if train:
            out.float().sum().backward()
    with torch.set_grad_enabled(train):
        once(); once(); sync()  # compile and warm up
        n, t0 = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < 0.2:
            once(); n += 1
        sync()
    return 1e3 * (time.perf_counter() - t0) / n


for dtype in ([torch.float32, torch.bfloat16] if cuda else [torch.float32]):
    dname = str(dtype).removeprefix("torch.")
    for t in lengths:
        x = torch.randn(b, t, d * h, device=device, dtype=dtype, requires_grad=train)
        causal = causal_mask(t, device=device)[None].expand(b, t, t)
        padded = causal & (torch.arange(t, device=device) < t - 1)[None, None, :]
        for kind, mask in (("causal", mark_causal(causal.clone())), ("masked", padded)):
            ms = {}
            for impl in ("sdpa", "flex"):
                m = create_attention("scaled-dot", d * h, num_heads=h, impl=impl).to(device, dtype)
                try:
                    ms[impl] = f"{timed(m, x, mask):.3f}"
                except Exception as exc:  # noqa: BLE001 - an empty time (a loss), not the end of the step
                    ms[impl] = ""
                    print(f"{dname} {kind} T={t} {impl} error: {exc!r}"[:300], flush=True)
            csv.write(f"flex,sdpa,{dname},{kind},{t},{ms['flex']},{ms['sdpa']}\n")
            print(f"{dname:9s} {kind:7s} T={t:6d} flex {ms['flex']:>9s} ms  sdpa {ms['sdpa']:>9s} ms"
                  f" ({'fwd+bwd' if train else 'fwd'})", flush=True)
EOF

# 7. the fused additive Triton kernel against the chunked path (and SDPA), with peak memory.
#    Appends its rows to auto-table.csv (kernel triton-additive, mask "any").
step auto-table-additive 70 "$PY" - "$DEVICE" "$OUT/auto-table.csv" "$OUT/additive-triton.csv" <<'EOF'
import sys, time, torch
import torch.nn.functional as F
from attnzoo.mechanisms.additive import AdditiveAttention, triton_available

device, table, path = sys.argv[1], sys.argv[2], sys.argv[3]
if device != "cuda":
    print("the compiled kernel needs CUDA; on the CPU it is tested under TRITON_INTERPRET=1 (tests/test_additive_triton.py)")
    sys.exit(0)
if not triton_available():
    print("Triton is not installed: pip install 'attnzoo[triton]'")
    sys.exit(1)
b, d = 4, 64
sync = torch.cuda.synchronize
rows = open(table, "a", buffering=1)
out = open(path, "w", buffering=1)
out.write("dtype,T,impl,ms,peak_mib,vs_sdpa\n")


def measure(fn):
    fn(); sync()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(); sync()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < 0.2:
        fn(); n += 1
    sync()
    return 1e3 * (time.perf_counter() - t0) / n, peak


for dtype in (torch.float32, torch.bfloat16):
    dname = str(dtype).removeprefix("torch.")
    for t in (1024, 2048, 4096):
        x = torch.randn(b, t, d, device=device, dtype=dtype, requires_grad=True)
        q, k, v = (torch.randn(b, 1, t, d, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        res = {"sdpa": measure(lambda: F.scaled_dot_product_attention(q, k, v).float().sum().backward())}
        for impl in ("reference", "triton"):
            torch.manual_seed(0)
            m = AdditiveAttention(d, impl=impl).to(device, dtype)
            try:
                res[impl] = measure(lambda: m(x).context.float().sum().backward())
            except Exception as exc:  # noqa: BLE001 - a row saying so, not the end of the step
                res[impl] = None
                print(f"{dname} T={t} {impl} error: {exc!r}"[:300], flush=True)
        for impl, r in res.items():
            if r is not None:
                out.write(f"{dname},{t},{impl},{r[0]:.3f},{r[1]:.1f},{r[0] / res['sdpa'][0]:.2f}\n")
                print(f"{dname:9s} T={t:5d} {impl:9s} {r[0]:9.3f} ms {r[1]:9.1f} MiB {r[0] / res['sdpa'][0]:7.2f}x SDPA",
                      flush=True)
        tri, ref = res.get("triton"), res.get("reference")
        rows.write(f"triton-additive,reference,{dname},any,{t},{'' if tri is None else f'{tri[0]:.3f}'},"
                   f"{'' if ref is None else f'{ref[0]:.3f}'}\n")
EOF

# 8. the smoke preset on the accelerator
step bench-smoke 45 attnzoo bench --preset smoke --accelerator "$ACCEL" --jobs 1 --no-report --out "$OUT/bench-smoke"

fi

if [[ $GROUPED == 1 ]]; then
# 9-10. grouped cells (issue 20): the default preset with --group auto (seeds/lrs of a task-backbone-variant
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

fi

echo "total $(( $(date +%s) - START ))s, $FAILED step(s) not ok" | tee -a "$SUMMARY"
exit "$FAILED"
