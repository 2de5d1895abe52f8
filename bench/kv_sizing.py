"""What the default KV sizing gives on this GPU (gpt-oss-20b shape, random weights): blocks, GiB, the
memory left after, and a short generate at the widest decode batch. Run: python bench/kv_sizing.py"""

import json
import tempfile
import time
from pathlib import Path

import torch

from atom import LLM, SamplingParams
from atom.bench.shapes import write_shape
from atom.bench.workload import random_prompts

folder = write_shape("gpt-oss-20b", Path(tempfile.mkdtemp()) / "m")
start = time.perf_counter()
llm = LLM(str(folder), load_format="dummy", max_num_seqs=256)
runner = llm.runner
free, total = torch.cuda.mem_get_info()
kv_gib = runner.num_blocks * runner._bytes_per_block() / 2**30
prompts = random_prompts(runner.model.args.vocab_size, 256, 512, 0)
t = time.perf_counter()
outs = llm.generate(prompts, SamplingParams(max_tokens=64, temperature=0, ignore_eos=True))
tok_s = sum(len(o.output_token_ids) for o in outs) / (time.perf_counter() - t)
print(
    json.dumps(
        {
            "gpu": torch.cuda.get_device_name(0),
            "blocks": runner.num_blocks,
            "kv_gib": round(kv_gib, 1),
            "tokens_of_kv": runner.num_blocks * runner.block_size,
            "startup_s": round(t - start, 1),
            "free_gib_after_start": round(free / 2**30, 1),
            "total_gib": round(total / 2**30, 1),
            "peak_gib_in_generate": round(torch.cuda.max_memory_allocated() / 2**30, 1),
            "tok_s_256x(512+64)": round(tok_s, 1),
        }
    )
)
