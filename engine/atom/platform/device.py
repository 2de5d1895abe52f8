"""What we are running on (vendor, arch) and what the image was built with, with reasons for each answer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .probes import probe_aiter, probe_triton, probe_triton_kernels

MANIFEST_PATH = Path(os.environ.get("ATOM_BUILD_MANIFEST", "/etc/atom/build.json"))


@dataclass(frozen=True)
class Platform:
    vendor: str  # cpu | nvidia | amd
    arch: str  # cpu | sm90 | gfx942 | ...
    device: str  # torch device type: cpu | cuda
    features: dict[str, bool] = field(default_factory=dict)  # triton, triton_kernels, aiter, aiter_ck
    reasons: dict[str, str] = field(default_factory=dict)
    build: dict | None = None  # /etc/atom/build.json

    @property
    def kind(self) -> str:
        return {"amd": "rocm", "nvidia": "cuda"}.get(self.vendor, "cpu")

    def has(self, feature: str) -> bool:
        return self.features.get(feature, False)


def gpu_arch(device=0) -> str:
    """gfx942 / gfx950 from the AMD device properties, sm90 ... from the NVIDIA compute capability."""
    import torch

    props = torch.cuda.get_device_properties(device)
    if getattr(torch.version, "hip", None):
        return props.gcnArchName.split(":")[0]
    return f"sm{props.major}{props.minor}"


def detect_arch() -> tuple[str, str, str]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", "cpu", "cpu"
    return ("amd" if getattr(torch.version, "hip", None) else "nvidia"), gpu_arch(0), "cuda"


def load_build_manifest(path: Path = MANIFEST_PATH) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def detect() -> Platform:
    vendor, arch, device = detect_arch()
    return _with_probes(vendor, arch, device, load_build_manifest())


def simulated(arch: str, ck: bool = False, triton_kernels: bool = False, triton: bool = True) -> Platform:
    """A platform description for policy tests and `atom backends --arch` (nothing is probed)."""
    vendor = "amd" if arch.startswith("gfx") else "nvidia" if arch.startswith("sm") else "cpu"
    features = {
        "triton": triton and vendor != "cpu",
        "triton_kernels": triton_kernels,
        "aiter": ck,
        "aiter_ck": ck,
    }
    reasons = {k: f"simulated: {'yes' if v else 'no'}" for k, v in features.items()}
    return Platform(vendor, arch, "cpu" if vendor == "cpu" else "cuda", features, reasons)


def _with_probes(vendor: str, arch: str, device: str, build: dict | None) -> Platform:
    features, reasons = {}, {}
    for name, probe in (
        ("triton", probe_triton),
        ("triton_kernels", probe_triton_kernels),
        ("aiter", probe_aiter),
    ):
        result = probe(device=device)
        features.update(result.features)
        reasons.update(result.reasons)
    return Platform(vendor, arch, device, features, reasons, build)


def check_build_arch(platform: Platform) -> None:
    """Starting on a GPU the image was not built for is an error, not a slow surprise."""
    build = platform.build
    if not build or platform.vendor == "cpu" or not build.get("archs"):
        return
    if platform.arch not in build["archs"]:
        raise RuntimeError(
            f"this image was built for {build['archs']} (recipe {build.get('recipe')}), but the GPU is "
            f"{platform.arch}; rebuild with `atom-build wheels --arch {platform.arch}`"
        )
