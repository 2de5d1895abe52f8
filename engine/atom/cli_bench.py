"""`atom bench ...`: benchmarks that print a table and write JSON (GPU ones say so in their help)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .cli_options import (
    AttentionBackendOpt,
    LoadFormatOpt,
    ModelOpt,
    MoeBackendOpt,
    TensorParallelOpt,
)

bench_app = typer.Typer(
    help="Benchmarks that print a table and write JSON.", no_args_is_help=True, rich_markup_mode=None
)


@bench_app.command("serve")
def bench_serve(
    url: str = "http://127.0.0.1:8000",
    num_prompts: int = 64,
    concurrency: Annotated[int, typer.Option(help="Most requests in flight (0: no limit).")] = 16,
    request_rate: Annotated[
        float, typer.Option(help="Poisson arrivals per second (inf: all at once).")
    ] = float("inf"),
    input_len: int = 128,
    output_len: int = 64,
    model: str | None = None,
    endpoint: Annotated[
        str,
        typer.Option(help="completions (token-id prompts) or chat (text prompts of about input-len tokens)."),
    ] = "completions",
    workers: Annotated[
        int, typer.Option(help="Client processes sharing the load (one process tops out near 10k events/s).")
    ] = 1,
    slo_ttft_ms: float = 2000.0,
    slo_tpot_ms: float = 200.0,
    json_out: Annotated[Path, typer.Option("--json-out", help="Where the JSON goes.")] = Path(
        "bench-serve.json"
    ),
    seed: int = 0,
    api_key: Annotated[
        str | None, typer.Option(envvar="OPENAI_API_KEY", help="Sent as a bearer token.")
    ] = None,
) -> None:
    """Load an OpenAI server with streaming requests; report TTFT, TPOT, ITL, E2E, throughput, goodput."""
    from .bench.serve import Load, print_table, run_bench

    if endpoint not in ("completions", "chat"):
        raise typer.BadParameter(f"--endpoint must be completions or chat, not {endpoint!r}")
    load = Load(
        url, num_prompts, concurrency, request_rate, input_len, output_len, model, endpoint, seed, workers
    )
    try:
        result = run_bench(load, slo_ttft_ms, slo_tpot_ms)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    print_table(result)
    json_out.write_text(json.dumps(result, indent=2))
    typer.echo(f"json: {json_out}")


@bench_app.command("offline")
def bench_offline(
    model: ModelOpt,
    num_prompts: int = 64,
    input_len: int = 128,
    output_len: int = 64,
    load_format: LoadFormatOpt = "auto",
    max_num_seqs: int = 64,
    max_num_batched_tokens: int | None = None,
    seed: int = 0,
    kv_cache_memory_gb: float | None = None,
    tensor_parallel_size: TensorParallelOpt = 1,
    async_scheduling: Annotated[bool, typer.Option(help="see atom serve --help")] = True,
    json_out: Annotated[Path | None, typer.Option("--json-out")] = None,
) -> None:
    """Offline engine throughput on the same synthetic workload as `bench serve`."""
    from .bench.offline import run_offline

    result = run_offline(
        model,
        num_prompts,
        input_len,
        output_len,
        load_format,
        max_num_seqs,
        seed,
        kv_cache_memory_gb,
        tensor_parallel_size,
        max_num_batched_tokens,
        async_scheduling,
    )
    typer.echo(json.dumps(result, indent=2))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))


@bench_app.command("moe")
def bench_moe(
    shape: Annotated[list[str], typer.Option(help="gpt-oss-20b and/or gpt-oss-120b")] = ["gpt-oss-20b"],  # noqa: B006
    m: Annotated[list[int], typer.Option(help="tokens per call")] = [1, 8, 32, 128, 1024, 8192],  # noqa: B006
    backend: Annotated[list[str] | None, typer.Option(help="default: every implemented one")] = None,
    profile: Annotated[bool, typer.Option(help="also print each backend's kernels per call")] = False,
    json_out: Annotated[Path | None, typer.Option("--json-out")] = None,
) -> None:
    """MoE layer microbenchmark (GPU): time per backend under CUDA graphs, floors, error vs torch."""
    from .bench.moe import print_moe_table, run_moe_bench

    rows = run_moe_bench(shape, m, backend, profile=profile)
    print_moe_table(rows)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@bench_app.command("moe-tiles")
def bench_moe_tiles(
    shape: Annotated[list[str], typer.Option(help="gpt-oss-20b and/or gpt-oss-120b")] = ["gpt-oss-20b"],  # noqa: B006
    m: Annotated[list[int], typer.Option(help="tokens per call")] = [1, 128, 8192],  # noqa: B006
    budget_s: Annotated[float, typer.Option(help="stop sweeping one (shape, M) after this long")] = 120,
    json_out: Annotated[Path | None, typer.Option("--json-out")] = None,
) -> None:
    """Sweep our Triton MoE's tiles (GPU): the fastest correct ones go into triton_moe_tiles.TILES."""
    from .bench.moe_tiles import print_sweep, sweep

    rows = []
    for name in shape:
        for tokens in m:
            found = sweep(name, tokens, budget_s)
            print_sweep(found)
            rows += found
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@bench_app.command("linear")
def bench_linear(
    m: Annotated[list[int], typer.Option(help="rows per call")] = [1, 2, 4],  # noqa: B006
    shape: Annotated[list[str], typer.Option(help="qkv, o, qkv/2, o/2, router-20b, router-120b")] = [  # noqa: B006
        "qkv",
        "o",
        "qkv/2",
        "o/2",
        "router-20b",
        "router-120b",
    ],
    sweep: Annotated[bool, typer.Option(help="time every GEMV tile (else the table's)")] = True,
    json_out: Annotated[Path | None, typer.Option("--json-out")] = None,
) -> None:
    """Dense projections at decode sizes (GPU): cuBLAS against our GEMV and its tiles, with the floor."""
    from .bench.linear import print_linear_table, run_linear_bench

    rows = run_linear_bench(m, shape, sweep)
    print_linear_table(rows)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@bench_app.command("gpt-oss")
def bench_gpt_oss(
    shape: str = "gpt-oss-20b",
    hf: Annotated[bool, typer.Option(help="also run HF transformers on the same shape")] = True,
    moe_backend: MoeBackendOpt = None,
    attention_backend: AttentionBackendOpt = None,
    profile: Annotated[bool, typer.Option(help="also profile decode steps at batch 1 and 16")] = False,
    async_scheduling: Annotated[bool, typer.Option(help="see atom serve --help")] = True,
    json_out: Annotated[Path | None, typer.Option("--json-out")] = None,
) -> None:
    """Offline throughput on a gpt-oss shape with random MXFP4 weights (GPU), next to HF transformers."""
    from .bench.gpt_oss import run_gpt_oss_bench

    kwargs = {
        k: v for k, v in {"moe_backend": moe_backend, "attention_backend": attention_backend}.items() if v
    }
    kwargs["async_scheduling"] = async_scheduling
    rows = run_gpt_oss_bench(shape, hf, kwargs, emit=lambda row: typer.echo(json.dumps(row)), profile=profile)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@bench_app.command("model")
def bench_model(
    shape: Annotated[str, typer.Option(help="deepseek-v3, qwen3-30b-a3b, gpt-oss-20b, gpt-oss-120b")],
    layers: Annotated[int, typer.Option(help="Cut the model to this many layers (random weights).")] = 4,
    batch: Annotated[list[int], typer.Option(help="Decode batch sizes.")] = [1, 64],  # noqa: B006
    hf: Annotated[bool, typer.Option(help="also run HF transformers on the same shape")] = True,
    linear_backend: Annotated[
        str | None, typer.Option(help="An FP8 model's projections: triton (FP8 kept) or torch (dequantized).")
    ] = None,
    tensor_parallel_size: TensorParallelOpt = 1,
    json_out: Annotated[Path | None, typer.Option("--json-out")] = None,
) -> None:
    """Decode tok/s on a published model shape with random weights (GPU), next to HF transformers."""
    from .bench.models import run_model_bench

    kwargs = {"linear_backend": linear_backend} if linear_backend else {}
    kwargs["tensor_parallel_size"] = tensor_parallel_size
    rows = run_model_bench(shape, layers, batch, hf, emit=lambda row: typer.echo(json.dumps(row)), **kwargs)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@bench_app.command("tp")
def bench_tp(
    shape: str = "gpt-oss-120b",
    tp: Annotated[list[int], typer.Option("--tp", help="Sizes to compare (repeatable).")] = [1, 2],  # noqa: B006
    batch: Annotated[list[int], typer.Option(help="Decode batch sizes.")] = [1, 64],  # noqa: B006
    json_out: Annotated[Path | None, typer.Option("--json-out")] = None,
) -> None:
    """Tensor parallelism (GPUs): decode tok/s per size, all-reduce time per step, fp32 agreement."""
    from .bench.tensor_parallel import run_tp_bench

    rows = run_tp_bench(shape, tp, batch, emit=lambda row: typer.echo(json.dumps(row)))
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@bench_app.command("grammar")
def bench_grammar(
    model: ModelOpt,
    batch: Annotated[list[int], typer.Option(help="Constrained sequences per step.")] = [1, 8, 64],  # noqa: B006
    throughput: Annotated[
        bool,
        typer.Option(help="Output tok/s through the engine, constrained vs free, instead of the mask alone."),
    ] = False,
    load_format: LoadFormatOpt = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the rows here.")] = None,
) -> None:
    """Structured outputs' cost: the token mask for B constrained sequences per step, or (--throughput)
    the engine's output tok/s with and without a schema at each batch size."""
    from .bench.grammar import run_grammar_bench, run_grammar_throughput

    if throughput:
        rows = run_grammar_throughput(model, batch, load_format=load_format)
    else:
        rows = run_grammar_bench(model, batch)
    for row in rows:
        typer.echo(json.dumps(row))
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@bench_app.command("agree")
def bench_agree(
    shape: str = "gpt-oss-20b",
    layers: int = 4,
    dtype: str = "float32",
    moe_backend: str = "triton",
    attention_backend: str = "triton",
) -> None:
    """Greedy tokens of the torch reference vs other backends on the same random weights (GPU)."""
    from .bench.gpt_oss import greedy_agreement

    backends = {"moe_backend": moe_backend, "attention_backend": attention_backend}
    typer.echo(json.dumps(greedy_agreement(shape, layers, dtype, backends)))
