"""Serving benchmark client (reports what `vllm bench serve` reports): streaming /v1/completions."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time

import httpx

from .workload import random_prompts


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p99": 0.0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "mean": statistics.fmean(values) * 1000,
        "median": statistics.median(values) * 1000,
        "p99": p99 * 1000,
    }


async def _one(client: httpx.AsyncClient, url: str, model: str, prompt: list[int], output_len: int) -> dict:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": output_len,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    arrivals, tokens = [], None
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk["choices"]:
                    arrivals.append(time.perf_counter())
                elif chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    # an event may carry several tokens (a server merges what a slow reader has not taken): count tokens
    # from the usage the server reports, not events
    return {
        "start": start,
        "arrivals": arrivals,
        "end": end,
        "tokens": len(arrivals) if tokens is None else tokens,
    }


async def _run(url, num_prompts, concurrency, request_rate, input_len, output_len, model, seed, progress):
    # The connection pool is as large as the load asked for: httpx's default of 100 connections
    # silently capped every --concurrency above it.
    limits = httpx.Limits(max_connections=concurrency or None, max_keepalive_connections=concurrency or None)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        models = (await client.get(f"{url}/v1/models")).json()["data"]
        model = model or models[0]["id"]
        prompts = random_prompts(32000, num_prompts, input_len, seed)
        sem = asyncio.Semaphore(concurrency) if concurrency else None
        done: list[dict] = []

        async def limited(p):
            if sem is None:
                result = await _one(client, url, model, p, output_len)
            else:
                async with sem:
                    result = await _one(client, url, model, p, output_len)
            done.append(result)
            return result

        await _one(client, url, model, prompts[0], output_len)  # warm-up
        start = time.perf_counter()
        reporter = asyncio.create_task(_progress(done, num_prompts, start)) if progress else None
        tasks = []
        arrivals = random.Random(seed)
        for p in prompts:
            tasks.append(asyncio.create_task(limited(p)))
            if request_rate != float("inf"):  # Poisson arrivals: exponential gaps at the asked rate
                await asyncio.sleep(arrivals.expovariate(request_rate))
        results = await asyncio.gather(*tasks)
        if reporter:
            reporter.cancel()
        return results, time.perf_counter() - start


async def _progress(done: list[dict], total: int, start: float) -> None:
    while True:
        await asyncio.sleep(2)
        tokens = sum(r["tokens"] for r in done)
        elapsed = time.perf_counter() - start
        print(f"  {len(done)}/{total} requests, {tokens / elapsed:,.0f} output tok/s so far", file=sys.stderr)


def run_bench(
    url: str,
    num_prompts: int,
    concurrency: int,
    input_len: int,
    output_len: int,
    model: str | None,
    slo_ttft_ms: float,
    slo_tpot_ms: float,
    seed: int,
    request_rate: float = float("inf"),
    progress: bool = True,
) -> dict:
    """concurrency: the most requests in flight (0: no limit); request_rate: Poisson arrivals per second
    (inf: all at once, so concurrency alone sets the load), as `vllm bench serve` offers both."""
    results, duration = asyncio.run(
        _run(url, num_prompts, concurrency, request_rate, input_len, output_len, model, seed, progress)
    )
    ttft, tpot, itl, e2e, good, tokens = [], [], [], [], 0, 0
    for r in results:
        a, n = r["arrivals"], r["tokens"]
        tokens += n
        first = a[0] - r["start"] if a else r["end"] - r["start"]
        ttft.append(first)
        e2e.append(r["end"] - r["start"])
        per_token = (a[-1] - a[0]) / (n - 1) if n > 1 and a else 0.0  # TPOT as vllm bench serve defines it
        tpot.append(per_token)
        itl.extend(b - c for b, c in zip(a[1:], a[:-1], strict=False))
        good += first * 1000 <= slo_ttft_ms and per_token * 1000 <= slo_tpot_ms
    return {
        "num_prompts": num_prompts,
        "concurrency": concurrency,
        "request_rate": request_rate if request_rate != float("inf") else "inf",
        "input_len": input_len,
        "output_len": output_len,
        "duration_s": round(duration, 3),
        "completed": len(results),
        "output_tokens": tokens,
        "request_throughput_req_s": round(len(results) / duration, 3),
        "output_throughput_tok_s": round(tokens / duration, 2),
        "goodput_req_s": round(good / duration, 3),
        "slo": {"ttft_ms": slo_ttft_ms, "tpot_ms": slo_tpot_ms},
        "ttft_ms": _stats(ttft),
        "tpot_ms": _stats(tpot),
        "itl_ms": _stats(itl),
        "e2e_ms": _stats(e2e),
    }


def print_table(r: dict) -> None:
    print(f"{'metric':<28}{'mean':>12}{'median':>12}{'p99':>12}")
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        s = r[key]
        print(f"{key:<28}{s['mean']:>12.2f}{s['median']:>12.2f}{s['p99']:>12.2f}")
    print(
        f"requests: {r['completed']} in {r['duration_s']} s  request throughput {r['request_throughput_req_s']} "
        f"req/s  output throughput {r['output_throughput_tok_s']} tok/s  goodput {r['goodput_req_s']} req/s"
    )
