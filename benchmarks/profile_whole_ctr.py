import cProfile, pstats, io, sys, torch
from dataclasses import replace
from benchmarks.run_benchmark import build_model, make_batch
from benchmarks.long_context import WHOLE_CTR
from sinkmech.attention.backends import FusedBackend
from sinkmech.mechanism.ctr import analyse_ctr
from sinkmech.models.loading import ModelSpec, describe, wrap_hf
hf = build_model("llama-3-8b", "cuda", seed=0)
spec = ModelSpec("llama-3-8b", "tiny", dtype="bfloat16")
loaded = replace(describe(spec, wrap_hf(hf, replace(spec, device="cuda"), None), None), backend=FusedBackend())
batch = make_batch(hf.config.vocab_size, 4, 1024, seed=0)
analyse_ctr(loaded, [batch], replace(WHOLE_CTR, top_heads=1))  # warm-up
torch.cuda.synchronize()
prof = cProfile.Profile(); prof.enable()
analyse_ctr(loaded, [batch], WHOLE_CTR); torch.cuda.synchronize()
prof.disable()
s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45); print(s.getvalue()[:9000])
s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(20); print(s.getvalue()[:5000])
