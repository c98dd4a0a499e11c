#!/usr/bin/env bash
# Fused backend vs the hook reference on the GPU (issue 17): the suite's ctr tables of every family
# (random tiny models, MiniLM, the trained ladder S pair) computed twice, model.attn_backend=hooks
# and =fused, in float32 (must agree to 1e-5) and bfloat16 (to 1e-2); then the kernel tests.
#   bash benchmarks/fused_exactness.sh OUT_DIR
set -uo pipefail
out=${1:?usage: fused_exactness.sh OUT_DIR}
models=${MODELS:-tiny_gpt2,tiny_llama,tiny_qwen2,tiny_qwen3,tiny_olmo2,tiny_gemma3,minilm,ladder_s_qknorm,ladder_s_noqknorm}
mkdir -p "$out"
status=0
for dtype in float32 bfloat16; do
  tolerance=$([ "$dtype" = float32 ] && echo 1e-5 || echo 1e-2)
  for backend in hooks fused; do
    python -m experiments.run -m experiment=ctr "model=$models" model.device=cuda data.limit=16 logging.mode=disabled \
      "model.dtype=$dtype" "model.attn_backend=$backend" "results_dir=$out/$dtype/$backend" \
      hydra.sweep.dir=/tmp/multirun >"$out/run_${dtype}_${backend}.log" 2>&1 || status=1
    tail -3 "$out/run_${dtype}_${backend}.log"
  done
  python -m experiments.compare "$out/$dtype/hooks" "$out/$dtype/fused" --tolerance "$tolerance" \
    --out "$out/compare_$dtype" || status=1
done
python -m pytest tests/attention -q -rs 2>&1 | tail -5 | tee "$out/kernel_tests.txt"
exit $status
