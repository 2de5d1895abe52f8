"""Probes that say what is installed and why they think so (never just "import worked")."""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field


@dataclass
class ProbeResult:
    features: dict[str, bool] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, ok: bool, reason: str) -> ProbeResult:
        self.features[name] = ok
        self.reasons[name] = reason
        return self


def probe_triton(device: str) -> ProbeResult:
    result = ProbeResult()
    if importlib.util.find_spec("triton") is None:
        return result.set("triton", False, "triton is not installed")
    import triton

    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return result.set(
            "triton",
            False,
            f"triton {triton.__version__} present but no GPU (TRITON_INTERPRET=1 "
            "runs kernels in the CPU interpreter)",
        )
    mode = "interpreter" if device == "cpu" else "GPU"
    return result.set("triton", True, f"triton {triton.__version__} ({mode})")


def probe_triton_kernels(device: str) -> ProbeResult:
    """PyPI's unrelated `triton_kernels` 0.1.0 shares the import name: check for the real API."""
    result = ProbeResult()
    if importlib.util.find_spec("triton_kernels") is None:
        return result.set("triton_kernels", False, "triton_kernels is not importable")
    from ..backends.triton_kernels_moe import api  # the backend's own era detection, nothing parallel

    try:
        found = api()
    except Exception as e:  # the unrelated package has no matmul_ogs; a mismatched Triton fails here too
        return result.set(
            "triton_kernels",
            False,
            f"triton_kernels has no matmul_ogs/matmul API ({e.__class__.__name__}: {e}); "
            "PyPI's unrelated package?",
        )
    return result.set(
        "triton_kernels", True, f"real triton_kernels ({found.matmul.__name__}, {found.era}-era API)"
    )


def probe_aiter(device: str) -> ProbeResult:
    """aiter present? CK modules prebuilt, or JIT-buildable (a missing .so is not "no CK")."""
    result = ProbeResult()
    if importlib.util.find_spec("aiter") is None:
        result.set("aiter", False, "aiter is not installed")
        return result.set("aiter_ck", False, "aiter is not installed")
    result.set("aiter", True, "aiter importable")
    try:
        from aiter.jit import core  # aiter's JIT registry knows which modules exist and where .so files go

        prebuilt = any(name.endswith(".so") for name in os.listdir(core.get_user_jit_dir()))
        ck_src = os.path.isdir(getattr(core, "CK_DIR", "")) or bool(os.environ.get("CK_DIR"))
        if prebuilt:
            return result.set("aiter_ck", True, "CK modules prebuilt in the aiter JIT dir")
        if ck_src:
            return result.set(
                "aiter_ck", True, "CK modules not built yet but JIT-buildable (CK sources present)"
            )
        return result.set(
            "aiter_ck", False, "aiter without CK sources or prebuilt modules (ENABLE_CK=0 build)"
        )
    except Exception as e:
        return result.set("aiter_ck", False, f"aiter.jit.core unusable: {e.__class__.__name__}: {e}")
