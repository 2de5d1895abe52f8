"""Clear errors for bad models and bad requests."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from atom import LLM, SamplingParams
from atom.errors import InvalidRequestError, ModelLoadError


def clone(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_unknown_architecture(tiny_mixtral, tmp_path):
    folder = clone(tiny_mixtral, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"unknown architecture \['MambaForCausalLM'\]"):
        LLM(str(folder))


def test_missing_tensor_is_named(tiny_mixtral, tmp_path):
    folder = clone(tiny_mixtral, tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["model.layers.1.self_attn.k_proj.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"missing tensors: model\.layers\.1\.self_attn\.k_proj\.weight"):
        LLM(str(folder))


def test_one_missing_expert_is_named(tiny_mixtral, tmp_path):
    # experts are stacked from per-expert tensors: one absent must not pass as loaded with the others
    folder = clone(tiny_mixtral, tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["model.layers.2.block_sparse_moe.experts.4.w3.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(
        ModelLoadError, match=r"missing tensors: model\.layers\.2\.block_sparse_moe\.experts\.4\.w3"
    ):
        LLM(str(folder))


def test_mismatched_shape_names_tensor_and_shapes(tiny_mixtral, tmp_path):
    folder = clone(tiny_mixtral, tmp_path)
    state = load_file(folder / "model.safetensors")
    state["model.norm.weight"] = torch.ones(65)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"model\.norm\.weight.*\(65,\).*\(64,\)"):
        LLM(str(folder))


def test_prompt_longer_than_context(tiny_mixtral):
    llm = LLM(str(tiny_mixtral), max_model_len=32)
    with pytest.raises(InvalidRequestError, match="40 tokens but the model's context length is 32"):
        llm.add_request(list(range(3, 43)))
    with pytest.raises(InvalidRequestError, match="exceeds the context length 32"):
        llm.add_request(list(range(3, 23)), SamplingParams(max_tokens=20))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"min_p": 2}, "min_p"),
        ({"logprobs": 50}, "logprobs"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
    ],
)
def test_impossible_sampling_params(kwargs, message):
    with pytest.raises(InvalidRequestError, match=message):
        SamplingParams(**kwargs)


def test_sampling_seed_is_reproducible_and_filters_apply(tiny_mixtral):
    llm = LLM(str(tiny_mixtral))
    params = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, top_k=20, seed=7, ignore_eos=True)
    a, b = llm.generate([[5, 6, 7], [5, 6, 7]], [params, SamplingParams(**{**params.__dict__})])
    assert a.output_token_ids == b.output_token_ids
    greedy = llm.generate([[5, 6, 7]], SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))[0]
    first = greedy.output_token_ids[0]
    stopped = llm.generate([[5, 6, 7]], SamplingParams(max_tokens=12, temperature=0, stop_token_ids=[first]))[
        0
    ]
    assert stopped.output_token_ids == [first] and stopped.finish_reason == "stop"


def test_warm_up_leaves_nothing_behind(tiny_mixtral):
    llm = LLM(str(tiny_mixtral), num_kv_blocks=32)
    llm.warm_up()
    assert not llm.has_unfinished() and not llm.requests
    assert len(llm.block_manager.free) == 32  # every block back (cached hashes stay revivable)


GIB = 2**30


def test_kv_cache_takes_what_the_gpu_has_left():
    """On a GPU the KV cache gets utilization x total, less what is in use (weights, context, others),
    the activations' peak and the graphs' reserve; too little left is an error that says what to change."""
    from atom.engine.model_runner import GRAPH_RESERVE_BYTES, kv_blocks_for

    block = 2 * 2**20  # 2 MiB a block
    # an H200: 140 GiB, 40 in use (weights), 5 GiB of activations, 0.9 of it for us
    blocks = kv_blocks_for(140 * GIB, 100 * GIB, 5 * GIB, 0.9, block)
    assert blocks == int((0.9 * 140 * GIB - 40 * GIB - 5 * GIB - GRAPH_RESERVE_BYTES) // block)
    assert kv_blocks_for(140 * GIB, 100 * GIB, 5 * GIB, 0.5, block) < blocks  # a smaller share, fewer
    from atom.errors import EngineDeadError

    with pytest.raises(EngineDeadError, match="raise --gpu-memory-utilization.*--kv-cache-memory-gb"):
        kv_blocks_for(80 * GIB, 10 * GIB, 2 * GIB, 0.9, block)  # 70 GiB in use already


@pytest.mark.parametrize("utilization", [0.0, 1.5, -0.1])
def test_gpu_memory_utilization_out_of_range_is_refused(utilization):
    from atom.config import EngineConfig

    with pytest.raises(ValueError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
        EngineConfig(model="m", gpu_memory_utilization=utilization)


def test_the_cpu_kv_cache_keeps_its_fixed_default(tiny_llama):
    """No GPU: 2 GB of KV cache unless told otherwise (the utilization rule is for GPUs)."""
    from atom.engine.model_runner import CPU_KV_CACHE_GB

    with LLM(str(tiny_llama)) as llm:
        per_block = llm.runner._bytes_per_block()
        assert llm.runner.num_blocks == int(CPU_KV_CACHE_GB * GIB // per_block)
    with LLM(str(tiny_llama), kv_cache_memory_gb=0.5) as llm:
        assert llm.runner.num_blocks == int(0.5 * GIB // per_block)
