"""`atom`: generate, serve, inspect backends, benchmark."""

from __future__ import annotations

import contextlib
import json
import signal
from typing import Annotated

import typer

app = typer.Typer(
    help="atom: a compact continuous-batching LLM engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: fits 80 columns, flags shown without a value
)
from .cli_bench import bench_app  # noqa: E402  (`atom bench ...`: its own module)

app.add_typer(bench_app, name="bench")

from .cli_options import (  # noqa: E402  (the shared option types)
    AttentionBackendOpt,
    LoadFormatOpt,
    MasterAddrOpt,
    MasterPortOpt,
    ModelOpt,
    MoeBackendOpt,
    NnodesOpt,
    NodeRankOpt,
    TensorParallelOpt,
    TimeoutOpt,
    engine_config,
    parallel_config,
)


@app.command()
def generate(
    model: ModelOpt,
    prompt: Annotated[list[str], typer.Option("--prompt", help="Prompt (repeatable).")],
    max_tokens: int = 64,
    temperature: float = 0.0,
    chat: Annotated[bool, typer.Option(help="Wrap each prompt in the model's chat template.")] = True,
    moe_backend: MoeBackendOpt = None,
    attention_backend: AttentionBackendOpt = None,
    load_format: LoadFormatOpt = "auto",
    tensor_parallel_size: TensorParallelOpt = 1,
    nnodes: NnodesOpt = 1,
    node_rank: NodeRankOpt = 0,
    master_addr: MasterAddrOpt = "127.0.0.1",
    master_port: MasterPortOpt = None,
    distributed_timeout: TimeoutOpt = 300.0,
) -> None:
    """Generate completions offline and print them."""
    from .engine.llm_engine import LLM
    from .sampling_params import SamplingParams

    parallel = parallel_config(
        tensor_parallel_size, nnodes, node_rank, master_addr, master_port, distributed_timeout
    )
    config = engine_config(
        model,
        moe_backend=moe_backend,
        attention_backend=attention_backend,
        load_format=load_format,
        parallel=parallel,
    )
    if node_rank:
        workers_only(config)
    llm = LLM.from_config(config)
    texts = [
        llm.tokenizer.apply_chat_template([{"role": "user", "content": p}])
        if chat and llm.tokenizer.chat_template
        else p
        for p in prompt
    ]
    for p, out in zip(
        prompt,
        llm.generate(texts, SamplingParams(max_tokens=max_tokens, temperature=temperature)),
        strict=True,
    ):
        typer.echo(f"> {p}\n{out.text}\n")


@app.command()
def serve(
    model: ModelOpt,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_model_len: int | None = None,
    max_num_seqs: int = 64,
    max_num_batched_tokens: int = 2048,
    block_size: int = 16,
    enable_prefix_caching: Annotated[
        bool, typer.Option("--enable-prefix-caching/--no-prefix-caching")
    ] = True,
    moe_backend: MoeBackendOpt = None,
    attention_backend: AttentionBackendOpt = None,
    load_format: LoadFormatOpt = "auto",
    api_key: Annotated[
        str | None, typer.Option(envvar="ATOM_API_KEY", help="Require this bearer key.")
    ] = None,
    max_queued_requests: int = 256,
    kv_cache_memory_gb: Annotated[
        float | None,
        typer.Option(help="A fixed KV cache size (default: 2 GB on the CPU; on a GPU, see below)."),
    ] = None,
    gpu_memory_utilization: Annotated[
        float,
        typer.Option(
            help="On a GPU: the share of its memory the engine may hold; the KV cache takes what "
            "weights and a full step's activations leave."
        ),
    ] = 0.9,
    enforce_eager: Annotated[bool, typer.Option(help="No CUDA graphs for decode steps.")] = False,
    async_scheduling: Annotated[
        bool,
        typer.Option(help="Launch each step before reading the last one's tokens (hides host time)."),
    ] = True,
    shutdown_timeout: Annotated[
        float, typer.Option(help="Seconds in-flight requests get after SIGTERM.")
    ] = 30.0,
    served_model_name: Annotated[
        str | None, typer.Option(help="The model id clients see (default: the model folder's name).")
    ] = None,
    max_request_body_bytes: Annotated[
        int, typer.Option(min=1024, help="Larger request bodies get 413 before they are read.")
    ] = 8 << 20,
    max_connections: Annotated[int, typer.Option(min=1, help="Open connections; past it: 503.")] = 1024,
    header_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a request's headers may take to arrive.")
    ] = 10.0,
    idle_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds an idle keep-alive connection stays open.")
    ] = 15.0,
    tensor_parallel_size: TensorParallelOpt = 1,
    data_parallel_size: Annotated[
        int,
        typer.Option(
            "--data-parallel-size",
            "-dp",
            min=1,
            help="Engine replicas behind this endpoint, each with its own GPUs (tensor-parallel size each); "
            "requests go to the replica holding their prefix, else the least loaded.",
        ),
    ] = 1,
    max_data_parallel_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Autoscale: add replicas up to this many while requests queue (--autoscale-queue-depth per "
            "replica), retire idle ones down to --data-parallel-size.",
        ),
    ] = None,
    autoscale_queue_depth: Annotated[
        int, typer.Option(min=1, help="Queued requests per replica that call for another replica.")
    ] = 8,
    autoscale_idle_s: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds a replica above the minimum stays idle before it is retired."),
    ] = 60.0,
    distributed_executor_backend: Annotated[
        str,
        typer.Option(
            help="Where replicas run: mp (processes on this host) or ray (Ray actors on the cluster in "
            "RAY_ADDRESS, or a local one; needs the ray extra).",
        ),
    ] = "mp",
    nnodes: NnodesOpt = 1,
    node_rank: NodeRankOpt = 0,
    master_addr: MasterAddrOpt = "127.0.0.1",
    master_port: MasterPortOpt = None,
    distributed_timeout: TimeoutOpt = 300.0,
) -> None:
    """OpenAI-compatible server (completions, chat, streaming, metrics)."""
    import uvicorn

    from .server.app import create_app
    from .server.connection import with_header_timeout
    from .server.limits import ServerLimits
    from .server.scaling import ReplicaConfig

    config = engine_config(
        model,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        block_size=block_size,
        enable_prefix_caching=enable_prefix_caching,
        moe_backend=moe_backend,
        attention_backend=attention_backend,
        load_format=load_format,
        kv_cache_memory_gb=kv_cache_memory_gb,
        gpu_memory_utilization=gpu_memory_utilization,
        enforce_eager=enforce_eager,
        async_scheduling=async_scheduling,
        parallel=parallel_config(
            tensor_parallel_size, nnodes, node_rank, master_addr, master_port, distributed_timeout
        ),
    )
    if node_rank:
        workers_only(config)
    limits = ServerLimits(
        max_body_bytes=max_request_body_bytes,
        max_connections=max_connections,
        header_timeout_s=header_timeout,
        idle_timeout_s=idle_timeout,
        shutdown_timeout_s=shutdown_timeout,
    )
    failures: list[str] = []

    def stop_on_failure(error: str) -> None:
        failures.append(error)
        server.should_exit = True  # an orchestrator restarts a process that exits; a 503 forever helps no one

    if (data_parallel_size > 1 or max_data_parallel_size) and config.parallel.nnodes > 1:
        raise typer.BadParameter(
            "replicas of a model spread over several nodes are not supported yet",
            param_hint="--data-parallel-size",
        )
    try:
        replicas = ReplicaConfig(
            data_parallel_size,
            max_data_parallel_size,
            distributed_executor_backend,
            autoscale_queue_depth,
            idle_s=autoscale_idle_s,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    app_ = create_app(
        config, api_key, max_queued_requests, served_model_name, limits, stop_on_failure, replicas
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app_,
            host=host,
            port=port,
            log_level="info",
            http=with_header_timeout(limits.header_timeout_s),
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=limits.idle_timeout_s,  # type: ignore[arg-type]  # a float works
            # a backstop only: at shutdown_timeout our handlers answer 503 themselves
            timeout_graceful_shutdown=int(shutdown_timeout) + 5,
        )
    )
    # SIGTERM/SIGINT: stop accepting, let in-flight requests finish, exit 0 (uvicorn's own handler
    # re-raises the signal after shutdown, which makes the exit status -15). At the deadline the
    # requests still running are answered 503 (a stream: an error event, then [DONE]).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]

    def on_signal(*_) -> None:
        if not server.should_exit:
            app_.state.atom.shutdown_deadline_in(shutdown_timeout)
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    server.run()
    if failures:
        typer.echo(f"atom serve: the engine failed: {failures[0]}", err=True)
        raise typer.Exit(1)


def workers_only(config) -> None:
    """A node other than 0 runs its ranks and nothing else; exits when they do."""
    from .engine.core import resolve_max_model_len
    from .parallel.workers import run_node

    p = config.parallel
    typer.echo(f"atom: node {p.node_rank} of {p.nnodes}, ranks {list(p.node_ranks)}: workers only", err=True)
    raise typer.Exit(run_node(config, resolve_max_model_len(config)))


@app.command()
def backends(
    model: ModelOpt,
    arch: Annotated[str | None, typer.Option(help="Simulate a platform: cpu, sm90, gfx942, gfx950.")] = None,
    ck: Annotated[bool, typer.Option(help="With --arch: aiter with CK present.")] = False,
    triton_kernels: Annotated[bool, typer.Option(help="With --arch: real triton_kernels present.")] = False,
    moe_backend: MoeBackendOpt = None,
    attention_backend: AttentionBackendOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per layer type: which backend is chosen and why every other one is not."""
    from .backends.report import backend_report

    report = backend_report(model, arch, ck, triton_kernels, moe_backend, attention_backend)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"platform: {report['platform']}")
    for layer in report["layers"]:
        typer.echo(f"\n{layer['kind']} {layer['spec']}\n  chosen: {layer['chosen']}")
        for name, why in layer["rejected"].items():
            typer.echo(f"  not {name}: {why}")
    if "compiled" in report:
        compiled = report["compiled"]
        typer.echo(
            f"\nTriton kernels compiled for this arch ({compiled['table']}, triton {compiled['triton']}):"
        )
        for row in compiled["kernels"]:
            use = row.get("error") or (
                f"LDS {row['lds_bytes']} B, {row['vgprs']} VGPR + {row['agprs']} AGPR, spills {row['spills']}, "
                f"{row['waves_per_simd']} waves/SIMD {' '.join(row['mfma'])}"
            )
            typer.echo(f"  {row['kernel']} [{row['variant']}]: {use}")


if __name__ == "__main__":
    app()
