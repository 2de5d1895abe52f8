import time, torch
x = torch.zeros(1024, device="cuda")
for n in (25, 100, 250, 500):
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for _ in range(3): x.add_(1)
    torch.cuda.synchronize()
    with torch.cuda.graph(g):
        for _ in range(n):
            x.add_(1)
    for _ in range(5): g.replay()
    torch.cuda.synchronize()
    # CPU cost of launching (no sync between)
    t = time.perf_counter()
    for _ in range(50): g.replay()
    cpu = (time.perf_counter() - t) / 50 * 1e6
    torch.cuda.synchronize()
    # GPU time per graph
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(50): g.replay()
    b.record(); b.synchronize()
    gpu = a.elapsed_time(b) / 50 * 1e3
    # latency of one replay + sync from idle
    lat = []
    for _ in range(20):
        torch.cuda.synchronize()
        t = time.perf_counter(); g.replay(); torch.cuda.synchronize(); lat.append((time.perf_counter() - t) * 1e6)
    print(f"nodes {n:4d}: replay() on the CPU {cpu:7.1f} us, on the GPU {gpu:7.1f} us, replay+sync from idle {sorted(lat)[10]:7.1f} us")
