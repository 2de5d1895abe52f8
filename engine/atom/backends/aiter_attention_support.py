"""What aiter's paged attention is used for here. UNEXECUTED on these machines (no AMD GPU)."""

from .spec import Support

SUPPORT = Support(
    devices=frozenset({"rocm"}),
    archs=frozenset({"gfx942", "gfx950"}),
    head_dims=frozenset({64, 128}),
    sinks=False,
    sliding_window=False,
    # aiter's paged attention reads K as [blocks, kv_heads, D/x, page, x] and V as [blocks, kv_heads, D, page];
    # the engine allocates NHD, so this backend is never given a cache it would misread.
    kv_layouts=frozenset({"HND_x"}),
    requires=("aiter_ck",),
)
