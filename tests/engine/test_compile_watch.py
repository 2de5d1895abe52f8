"""The core's count of Triton kernels compiled after its warm-up, through Triton's own hook."""

from triton import knobs

from atom.backends.compile_watch import CompileWatch


def test_counts_through_tritons_hook_and_keeps_the_previous_one():
    seen = []
    original = knobs.runtime.jit_cache_hook
    knobs.runtime.jit_cache_hook = lambda **kw: seen.append(kw["repr"])
    try:
        watch = CompileWatch()
        assert watch.count == 0
        assert watch.arm()
        assert knobs.runtime.jit_cache_hook == watch._hook
        # as Triton calls it on an in-memory cache miss, just before compiling
        result = knobs.runtime.jit_cache_hook(key=("k",), repr="_topk_forward[num_warps=4](n_rows: i32)")
        assert result is None  # falsy: Triton goes on to compile
        assert watch.count == 1
        assert watch.kernels == ["_topk_forward[num_warps=4](n_rows: i32)"]
        assert seen == ["_topk_forward[num_warps=4](n_rows: i32)"]
    finally:
        knobs.runtime.jit_cache_hook = original
