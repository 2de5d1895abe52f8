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


class LoadFailed(msgspec.Struct, tag="load_failed"):
    error: str


class StepOutputs(msgspec.Struct, tag="step"):
    outputs: list[CoreOutput]
    stats: EngineStats


ToCore = AddRequest | Abort | Shutdown
FromCore = Ready | LoadFailed | StepOutputs

encoder = msgspec.msgpack.Encoder()
to_core = msgspec.msgpack.Decoder(ToCore)
from_core = msgspec.msgpack.Decoder(FromCore)
