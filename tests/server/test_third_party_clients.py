"""The clients people already use, against a real `atom serve`: langchain-openai, litellm, guidellm and
aiperf, each from .venv-clients (ci/setup.sh installs ci/clients-requirements.txt there), each at low CPU
priority so that on a 2-core machine the server, not the client, gets the CPU. Assertions are on success
counts and on the sanity of what the tools report, never on speed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-clients" / "bin"
CLIENTS = Path(__file__).parent / "clients"
MODEL = "smollm2-135m"
KEY = "sk-test"  # the shared server fixture's API key


@pytest.fixture(scope="module")
def venv() -> Path:
    assert (VENV / "python").exists(), "the third-party clients are not installed: run `bash ci/setup.sh`"
    return VENV


def run(args: list, timeout: float = 300) -> str:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_COLOR": "1"}
    done = subprocess.run(
        ["nice", "-n", "19", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_langchain_openai_invoke_stream_batch_async(server, venv):
    got = json.loads(
        run([venv / "python", CLIENTS / "langchain_calls.py", server, KEY, MODEL]).splitlines()[-1]
    )
    assert "Paris" in got["invoke"]
    assert got["invoke_usage"]["output_tokens"] == 8 and got["invoke_usage"]["input_tokens"] > 10
    assert got["invoke_fingerprint"].startswith("fp_")
    assert len([c for c in got["stream"] if c]) >= 4
    assert len(got["batch"]) == 3 and all(got["batch"])
    assert got["ainvoke"] and len([c for c in got["astream"] if c]) >= 4


def test_langchain_structured_output_gets_its_pydantic_models(server, venv):
    """langchain's with_structured_output(method="json_schema"): strict response_format, parsed into
    the pydantic model on the client side (it raises on anything that does not validate)."""
    got = json.loads(
        run([venv / "python", CLIENTS / "langchain_structured.py", server, KEY, MODEL]).splitlines()[-1]
    )
    assert len(got) == 2
    assert all(a["size"] in ("small", "medium", "large") and a["name"] for a in got)


def test_litellm_sync_stream_async(server, venv):
    got = json.loads(
        run([venv / "python", CLIENTS / "litellm_calls.py", server, KEY, MODEL]).splitlines()[-1]
    )
    assert "Paris" in got["sync"] and got["sync_usage"] == 8
    assert "".join(got["stream"]) == got["sync"]  # greedy: streamed and whole agree
    assert got["async"] == got["sync"] and "".join(got["astream"]) == got["sync"]


def test_guidellm_completes_every_request_at_its_defaults(server, venv, smollm2, tmp_path):
    """guidellm always sends stream_options.continuous_usage_stats (a vLLM extension)."""
    report = tmp_path / "guidellm.json"
    run(
        [
            venv / "guidellm", "run",
            "--backend", f"kind=openai_http,target={server},api_key={KEY}",
            "--profile", "kind=synchronous",
            "--constraint", "kind=max_requests,count=4",
            "--data", "kind=synthetic_text,prompt_tokens=16,output_tokens=8",
            "--tokenizer", f"kind=huggingface_auto,model={smollm2}",
            "--output", f"kind=json,path={report}",
            "--disable-console-interactive",
        ]
    )  # fmt: skip
    bench = json.loads(report.read_text())["benchmarks"][0]
    requests = bench["requests"]
    assert len(requests["successful"]) == 4 and not requests["errored"] and not requests["incomplete"]
    metrics = bench["metrics"]
    assert metrics["output_token_count"]["successful"]["total_sum"] == 4 * 8
    assert metrics["time_to_first_token_ms"]["successful"]["mean"] > 0
    assert metrics["output_tokens_per_second"]["successful"]["mean"] > 0


@pytest.mark.parametrize("per_chunk_usage", [False, True], ids=["defaults", "per-chunk-usage"])
def test_aiperf_completes_every_request(server, venv, smollm2, tmp_path, per_chunk_usage):
    """--per-chunk-usage asks for stream_options.continuous_usage_stats and counts tokens from it."""
    usage = ["--per-chunk-usage", "--use-server-token-count"] if per_chunk_usage else []
    run(
        [
            venv / "aiperf", "profile",
            "--model", MODEL, "--url", server, "--api-key", KEY,
            "--endpoint-type", "chat", "--streaming", *usage,
            "--request-count", "4", "--concurrency", "1", "--max-workers", "1",
            "--tokenizer", smollm2, "--isl", "16", "--osl", "8", "--extra-inputs", "ignore_eos:true",
            "--artifact-dir", tmp_path, "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry",
        ]
    )  # fmt: skip
    summary = json.loads((tmp_path / "profile_export_aiperf.json").read_text())
    assert summary["request_count"]["avg"] == 4 and not summary.get("error_summary")
    # with --use-server-token-count aiperf counts the server's usage; by default it re-tokenizes the text
    # it got, which can merge or split tokens (7.75 and 8.25 seen for 8)
    expected = (8, 8) if per_chunk_usage else (6, 10)
    assert expected[0] <= summary["output_sequence_length"]["avg"] <= expected[1]
    assert 0 < summary["time_to_first_token"]["avg"] < summary["request_latency"]["avg"]
    records = [json.loads(line) for line in (tmp_path / "profile_export.jsonl").read_text().splitlines()]
    assert len(records) == 4
    # the usage the server reported: exactly the 8 tokens asked for (ignore_eos), in every record
    assert all(r["metrics"]["usage_completion_tokens"]["value"] == 8 for r in records)


def test_langchain_tool_calls_validate(server, venv):
    """langchain's bind_tools: the required ("any") and named calls come back as parsed tool calls whose
    arguments validate against the tool's pydantic model (an anchored pattern included); streamed
    chunks add up to the same call."""
    got = json.loads(
        run([venv / "python", CLIENTS / "langchain_tools.py", server, KEY, MODEL]).splitlines()[-1]
    )
    for key in ("any", "GetWeather", "stream"):
        (call,) = got[key]
        assert call["name"] == "GetWeather" and call["id"].startswith("call_")
        assert set(call["args"]) == {"city", "unit"} and call["args"]["unit"] in ("celsius", "fahrenheit")
    assert got["stream"][0]["args"] == got["GetWeather"][0]["args"]
