"""Serving benchmark client (reports what `vllm bench serve` reports): streaming /v1/completions or
/v1/chat/completions, at a fixed concurrency or with Poisson arrivals, from one or several processes.

Definitions (the same as vLLM's `bench serve`, aiperf and guidellm use, per request):
- TTFT: request sent -> first streamed content.
- TPOT: (last content - first content) / (output tokens - 1); output tokens from the server's `usage`.
- ITL: the gaps between streamed content events. A server may put several tokens in one event (ours
  merges what a slow reader has not taken yet), so ITL can exceed TPOT; aiperf reports the same gaps as
  "inter chunk latency"; aiperf's "inter token latency" and guidellm's are our TPOT (docs/server.md).
- E2E: request sent -> stream closed.
Token counts come from `usage` (`stream_options.include_usage`); where a server sends none, content
events are counted instead and the JSON says so (`token_count_source: "chunks"`).

One Python process parsing a few hundred streams is itself a bottleneck (it delays the next request of a
closed loop), so `--workers` splits the load over processes that start together.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import random
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass

import httpx

from .workload import random_prompts, random_text


@dataclass
class Load:
    url: str
    num_prompts: int = 64
    concurrency: int = 16  # the most requests in flight (0: no limit)
    request_rate: float = float("inf")  # Poisson arrivals per second (inf: all at once)
    input_len: int = 128
    output_len: int = 64
    model: str | None = None
    endpoint: str = "completions"  # or "chat" (prompts as text: input_len is approximate there)
    seed: int = 0
    workers: int = 1
    api_key: str | None = None


def _body(load: Load, model: str, prompt: list[int] | str) -> dict:
    common = {
        "model": model,
        "max_tokens": load.output_len,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if load.endpoint == "chat":
        return {**common, "messages": [{"role": "user", "content": prompt}]}
    return {**common, "prompt": prompt}


def _content(chunk: dict) -> bool:
    """Whether a streamed chunk carries generated tokens: any choice except chat's opening role chunk
    (the usage-only chunk has no choices). Its text may be empty: tokens that decode to nothing yet
    (part of a character, random weights) are still tokens."""
    return any("role" not in (c.get("delta") or {}) for c in chunk.get("choices") or ())


async def _one(client: httpx.AsyncClient, load: Load, model: str, prompt) -> dict:
    path = "/v1/chat/completions" if load.endpoint == "chat" else "/v1/completions"
    start = time.monotonic()
    arrivals, usage = [], None
    async with client.stream("POST", f"{load.url}{path}", json=_body(load, model, prompt)) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if _content(chunk):
                arrivals.append(time.monotonic())
            if chunk.get("usage"):
                usage = chunk["usage"]
    return {
        "start": start,
        "arrivals": arrivals,
        "end": time.monotonic(),
        "tokens": usage["completion_tokens"] if usage else len(arrivals),
        "prompt_tokens": usage["prompt_tokens"] if usage else None,
        "from_usage": usage is not None,
    }


def _prompts(load: Load) -> list:
    if load.endpoint == "chat":
        return random_text(load.num_prompts, load.input_len, load.seed)
    return random_prompts(32000, load.num_prompts, load.input_len, load.seed)


async def _drive(load: Load, prompts: list, start_together, progress) -> list[dict]:
    """Warm up, wait until every worker has (start_together), then run this worker's prompts."""
    # The connection pool is as large as the load asked for: httpx's default of 100 connections
    # silently capped every --concurrency above it.
    size = load.concurrency or None
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    headers = {"Authorization": f"Bearer {load.api_key}"} if load.api_key else None
    async with httpx.AsyncClient(timeout=None, limits=limits, headers=headers) as client:
        if load.model:
            model = load.model
        else:
            listing = await client.get(f"{load.url}/v1/models")
            listing.raise_for_status()  # a wrong key or URL says so, not KeyError
            model = listing.json()["data"][0]["id"]
        await _one(client, load, model, prompts[0])  # warm-up: connections open, server paths warm
        await asyncio.get_running_loop().run_in_executor(None, start_together)
        sem = asyncio.Semaphore(load.concurrency) if load.concurrency else None

        async def limited(prompt):
            if sem is None:
                result = await _one(client, load, model, prompt)
            else:
                async with sem:
                    result = await _one(client, load, model, prompt)
            progress(result["tokens"])
            return result

        tasks, gaps = [], random.Random(load.seed)
        for prompt in prompts:
            tasks.append(asyncio.create_task(limited(prompt)))
            if load.request_rate != float("inf"):  # Poisson arrivals: exponential gaps at the asked rate
                await asyncio.sleep(gaps.expovariate(load.request_rate))
        return list(await asyncio.gather(*tasks))


def _share(load: Load, worker: int) -> Load:
    """One worker's part of the load: every workers-th prompt, its share of the concurrency and rate."""
    w = load.workers
    concurrency = load.concurrency // w + (worker < load.concurrency % w) if load.concurrency else 0
    rate = load.request_rate / w
    return Load(**{**asdict(load), "concurrency": concurrency, "request_rate": rate, "workers": 1})


def _worker(load: Load, worker: int, barriers, done_requests, done_tokens, results) -> None:
    def progress(tokens: int) -> None:
        with done_requests.get_lock():
            done_requests.value += 1
            done_tokens.value += tokens

    def start_together() -> None:
        for barrier in barriers:  # warmed up; then the parent reads the server's counters; go
            barrier.wait()

    prompts = _prompts(load)[worker :: load.workers]
    try:
        results.put(asyncio.run(_drive(_share(load, worker), prompts, start_together, progress)))
    except Exception as e:  # the parent reports it instead of waiting forever
        for barrier in barriers:
            barrier.abort()
        results.put(f"{e.__class__.__name__}: {e}")


def _run(load: Load, show_progress: bool) -> tuple[list[dict], dict | None]:
    """The results of every request, and the server's engine counters once every worker warmed up."""
    ctx = multiprocessing.get_context("spawn")
    barriers = (ctx.Barrier(load.workers + 1), ctx.Barrier(load.workers + 1))
    done_requests, done_tokens, results = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Queue()
    args = (barriers, done_requests, done_tokens, results)
    if load.workers == 1:  # in this process: no spawn, and tests can drive it
        thread = threading.Thread(target=_worker, args=(load, 0, *args), daemon=True)
        procs = [thread]
    else:
        procs = [ctx.Process(target=_worker, args=(load, w, *args), daemon=True) for w in range(load.workers)]
    for p in procs:
        p.start()
    counters = None
    try:
        barriers[0].wait()
        counters = engine_counters(load.url)
        barriers[1].wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed: its error is in the queue
    collected, start = [], time.monotonic()
    while len(collected) < load.workers:
        try:
            collected.append(results.get(timeout=2))
        except queue.Empty:  # report progress while waiting
            if show_progress:
                elapsed = time.monotonic() - start
                print(
                    f"  {done_requests.value}/{load.num_prompts} requests, "
                    f"{done_tokens.value / elapsed:,.0f} output tok/s so far",
                    file=sys.stderr,
                )
    for p in procs:
        p.join()
    errors = [c for c in collected if isinstance(c, str)]
    if errors:
        raise RuntimeError(f"the benchmark client failed: {errors[0]}")
    return [r for part in collected for r in part], counters


def stats_ms(values: list[float]) -> dict:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p99": 0.0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "mean": statistics.fmean(values) * 1000,
        "median": statistics.median(values) * 1000,
        "p99": p99 * 1000,
    }


def summarize(load: Load, results: list[dict], slo_ttft_ms: float, slo_tpot_ms: float) -> dict:
    ttft, tpot, itl, e2e, good, tokens = [], [], [], [], 0, 0
    for r in results:
        a, n = r["arrivals"], r["tokens"]
        tokens += n
        first = a[0] - r["start"] if a else r["end"] - r["start"]
        ttft.append(first)
        e2e.append(r["end"] - r["start"])
        per_token = (a[-1] - a[0]) / (n - 1) if n > 1 and a else 0.0
        tpot.append(per_token)
        itl.extend(b - c for b, c in zip(a[1:], a[:-1], strict=False))
        good += first * 1000 <= slo_ttft_ms and per_token * 1000 <= slo_tpot_ms
    duration = max(r["end"] for r in results) - min(r["start"] for r in results)
    prompt_tokens = [r["prompt_tokens"] for r in results if r["prompt_tokens"] is not None]
    return {
        "endpoint": load.endpoint,
        "num_prompts": load.num_prompts,
        "concurrency": load.concurrency,
        "request_rate": load.request_rate if load.request_rate != float("inf") else "inf",
        "workers": load.workers,
        "input_len": load.input_len,
        "mean_prompt_tokens": round(statistics.fmean(prompt_tokens), 1) if prompt_tokens else None,
        "output_len": load.output_len,
        "duration_s": round(duration, 3),
        "completed": len(results),
        "output_tokens": tokens,
        "token_count_source": "usage" if all(r["from_usage"] for r in results) else "chunks",
        "request_throughput_req_s": round(len(results) / duration, 3),
        "output_throughput_tok_s": round(tokens / duration, 2),
        "goodput_req_s": round(good / duration, 3),
        "slo": {"ttft_ms": slo_ttft_ms, "tpot_ms": slo_tpot_ms},
        "ttft_ms": stats_ms(ttft),
        "tpot_ms": stats_ms(tpot),
        "itl_ms": stats_ms(itl),
        "e2e_ms": stats_ms(e2e),
    }


IDLE_STATS_S = 0.6  # an idle core reports its counters every 0.5 s (server/core_process.py)
ENGINE_COUNTERS = (
    "steps", "step_seconds", "batch_sequences", "batch_tokens", "graph_steps", "graph_step_seconds",
    "ipc_seconds", "kernel_compiles",
)  # fmt: skip


def engine_counters(url: str) -> dict[str, float] | None:
    """Our server's core counters from /metrics (None from a server without them)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    values = {}
    for line in text.splitlines():
        for name in ENGINE_COUNTERS:
            if line.startswith(f"atom_engine_{name}_total "):
                values[name] = float(line.split()[1])
    return values if len(values) == len(ENGINE_COUNTERS) else None


def engine_summary(before, after) -> dict | None:
    """Where the core's time went during the run: mean batch width, time per step inside and outside
    the engine step (the latter is the core process's IPC). before/after: counters as dicts (from
    /metrics) or EngineStats."""
    if not before or not after:
        return None
    before, after = (v if isinstance(v, dict) else asdict(v) for v in (before, after))
    d = {k: after[k] - before[k] for k in ENGINE_COUNTERS}
    steps = max(d["steps"], 1)
    return {
        "steps": int(d["steps"]),
        "mean_batch_sequences": round(d["batch_sequences"] / steps, 1),
        "mean_batch_tokens": round(d["batch_tokens"] / steps, 1),
        "mean_step_ms": round(d["step_seconds"] / steps * 1000, 3),
        "mean_ipc_ms_per_step": round(d["ipc_seconds"] / steps * 1000, 3),
        # CUDA-graph (decode) steps against eager ones (prefill, mixed): where a slower step comes from
        "graph_steps": int(d["graph_steps"]),
        "kernel_compiles": int(d["kernel_compiles"]),
        "mean_graph_step_ms": _mean_ms(d["graph_step_seconds"], d["graph_steps"]),
        "mean_eager_step_ms": _mean_ms(
            d["step_seconds"] - d["graph_step_seconds"], d["steps"] - d["graph_steps"]
        ),
    }


def _mean_ms(seconds: float, count: float) -> float | None:
    return round(seconds / count * 1000, 3) if count else None


def run_bench(
    load: Load, slo_ttft_ms: float = 2000.0, slo_tpot_ms: float = 200.0, progress: bool = True
) -> dict:
    """concurrency alone sets a closed-loop load; request_rate adds Poisson arrivals (as `vllm bench
    serve` offers both)."""
    if load.workers < 1 or (load.concurrency and load.workers > load.concurrency):
        raise ValueError(f"--workers must be between 1 and the concurrency ({load.concurrency})")
    results, before = _run(load, progress)
    result = summarize(load, results, slo_ttft_ms, slo_tpot_ms)
    time.sleep(IDLE_STATS_S)  # the counters of the last step arrive with the core's next report
    engine = engine_summary(before, engine_counters(load.url))
    if engine:
        result["engine"] = engine
    return result


def print_table(r: dict) -> None:
    print(f"{'metric':<28}{'mean':>12}{'median':>12}{'p99':>12}")
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        s = r[key]
        print(f"{key:<28}{s['mean']:>12.2f}{s['median']:>12.2f}{s['p99']:>12.2f}")
    print(
        f"requests: {r['completed']} in {r['duration_s']} s  request throughput {r['request_throughput_req_s']} "
        f"req/s  output throughput {r['output_throughput_tok_s']} tok/s  goodput {r['goodput_req_s']} req/s"
        f"  (tokens from {r['token_count_source']})"
    )
    if "engine" in r:
        e = r["engine"]
        print(
            f"engine: {e['steps']} steps, mean batch {e['mean_batch_sequences']} sequences / "
            f"{e['mean_batch_tokens']} tokens, {e['mean_step_ms']} ms a step, "
            f"{e['mean_ipc_ms_per_step']} ms IPC a step; {e['graph_steps']} from CUDA graphs "
            f"({e['mean_graph_step_ms']} ms), the rest eager ({e['mean_eager_step_ms']} ms)"
        )
