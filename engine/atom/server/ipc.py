"""Messages between the API process and the engine-core process.

ZeroMQ carries them (PUSH/PULL over ipc:// sockets: no broker, no copies through a queue thread, and a
socket that survives a peer restarting); msgspec's MessagePack encodes them (typed structs and
dataclasses decode straight into their classes, several times faster than pickle or JSON, and nothing
is executed while decoding, unlike pickle). Both are widely used, well-kept libraries.
"""

from __future__ import annotations

import msgspec

from ..engine.core import ModelInfo
from ..engine.outputs import CoreOutput, EngineStats
from ..sampling_params import SamplingParams


# API process -> core
class AddRequest(msgspec.Struct, tag="add"):
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams


class Abort(msgspec.Struct, tag="abort"):
    request_ids: list[str]


class Shutdown(msgspec.Struct, tag="shutdown"):
    pass


# core -> API process
class Ready(msgspec.Struct, tag="ready"):
    info: ModelInfo
    stats: EngineStats  # the metrics are right from the first scrape


class CoreFailed(msgspec.Struct, tag="failed"):
    """The core could not load, or cannot go on (a tensor-parallel rank died); it exits after this."""

    error: str


class StepOutputs(msgspec.Struct, tag="step"):
    outputs: list[CoreOutput]
    stats: EngineStats


ToCore = AddRequest | Abort | Shutdown
FromCore = Ready | CoreFailed | StepOutputs

encoder = msgspec.msgpack.Encoder()
to_core = msgspec.msgpack.Decoder(ToCore)
from_core = msgspec.msgpack.Decoder(FromCore)
