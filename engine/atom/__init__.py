"""atom: a compact continuous-batching inference engine."""

from .config import EngineConfig
from .engine.llm_engine import LLM, LLMEngine, RequestOutput
from .sampling_params import SamplingParams

__all__ = ["LLM", "LLMEngine", "EngineConfig", "RequestOutput", "SamplingParams"]
__version__ = "0.1.0"
