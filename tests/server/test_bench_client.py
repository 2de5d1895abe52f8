"""`atom bench serve` against a real server: several client processes, both endpoints, token counts from
usage, and the core's own counters read back from /metrics."""

from __future__ import annotations

import pytest

from atom.bench.serve import Load, run_bench


def test_bench_serve_with_two_client_processes_counts_every_token(server):
    load = Load(server, num_prompts=6, concurrency=4, input_len=8, output_len=5, workers=2, api_key="sk-test")
    r = run_bench(load, progress=False)
    assert r["completed"] == 6 and r["workers"] == 2
    assert r["output_tokens"] == 6 * 5 and r["token_count_source"] == "usage"
    assert r["mean_prompt_tokens"] == 8
    assert 0 < r["ttft_ms"]["mean"] <= r["e2e_ms"]["mean"] and r["tpot_ms"]["mean"] > 0
    engine = r["engine"]  # what the core counted while the benchmark ran (warm-up requests excluded)
    assert engine["steps"] >= 5 and 1 <= engine["mean_batch_sequences"] <= 4
    assert engine["mean_batch_tokens"] >= engine["mean_batch_sequences"]
    assert engine["mean_step_ms"] > 0 and engine["mean_ipc_ms_per_step"] >= 0


def test_bench_serve_drives_chat(server):
    load = Load(
        server, num_prompts=3, concurrency=3, input_len=12, output_len=4, endpoint="chat", api_key="sk-test"
    )
    r = run_bench(load, progress=False)
    assert r["completed"] == 3 and r["output_tokens"] == 12 and r["endpoint"] == "chat"
    assert r["mean_prompt_tokens"] > 12  # the chat template wraps the text
    assert r["tpot_ms"]["mean"] > 0


def test_bench_serve_refuses_more_workers_than_streams(server):
    with pytest.raises(ValueError, match="--workers"):
        run_bench(Load(server, concurrency=2, workers=3), progress=False)


def test_bench_serve_reports_a_refused_request(server):
    with pytest.raises(RuntimeError, match="401"):  # no API key: every request is refused
        run_bench(Load(server, num_prompts=2, concurrency=2, input_len=4, output_len=2), progress=False)
