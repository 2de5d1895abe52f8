"""What aiter's paged attention is used for here. UNEXECUTED on these machines (no AMD GPU)."""

from .spec import Support

SUPPORT = Support(
    devices=frozenset({"rocm"}),
    archs=frozenset({"gfx942", "gfx950"}),
    head_dims=frozenset({64, 128}),
    sinks=False,
    sliding_window=False,
    requires=("aiter_ck",),
)
