"""torch.matmul at the GEMM shapes of gpu_bench, on the same device in the same call.

y = x @ w.T with bf16 x [M, K] and w [N, K] (torch dispatches to cuBLAS/cuBLASLt), plus the same
ceilings (device-to-device copy, 8192^3 matmul). Median over samples after warm-up, a sample being
one CUDA event pair around PER_PAIR back-to-back calls divided by PER_PAIR (as gpu_bench; Python's
launch overhead still shows where a call is shorter than it), random inputs, weights rotated over enough copies to defeat L2. Prints a table; --csv
writes rows shaped like gpu_bench's.
"""
import argparse
import statistics

import torch

ROTATE_BYTES = 512 << 20
PER_PAIR = 10  # calls per event pair for the GEMM shapes (the ceilings use 1)


def median_ms(fn, warmup, samples, per_pair):
    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(samples)]
    rep = warmup
    for a, b in events:
        a.record()
        for _ in range(per_pair):
            fn(rep)
            rep += 1
        b.record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) / per_pair for a, b in events)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 5 if args.quick else 20
    dev = torch.device("cuda")
    rows = []
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(0)}")
    src = torch.empty(1 << 29, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
    dst = torch.empty_like(src)
    t = median_ms(lambda i: dst.copy_(src), 3, reps, 1)
    copy_gbs = 2 * src.numel() * 2 / (t * 1e-3) / 1e9
    del src, dst
    a = torch.empty(8192, 8192, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
    b = torch.empty_like(a).uniform_(-1, 1)
    t = median_ms(lambda i: torch.matmul(a, b.T), 3, reps, 1)
    peak = 2 * 8192 ** 3 / (t * 1e-3) / 1e12
    del a, b
    print(f"ceilings: copy {copy_gbs:.0f} GB/s; torch.matmul bf16 8192^3 {peak:.0f} TFLOP/s\n")
    rows += [f"ceiling,copy_gbs,{copy_gbs:.1f}", f"ceiling,gemm_tflops,{peak:.1f}"]
    print(f"{'M':<6} {'N x K':<12} {'us':>10} {'TFLOP/s':>9} {'GB/s':>9}")
    for n, k in [(4096, 4096), (14336, 4096), (4096, 14336)]:
        copies = max(2, ROTATE_BYTES // (n * k * 2))
        ws = [torch.empty(n, k, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
              for _ in range(copies)]
        for m in [1, 8, 64, 256, 2048]:
            xs = [torch.empty(m, k, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
                  for _ in range(copies)]
            t = median_ms(lambda i: torch.matmul(xs[i % copies], ws[i % copies].T), 5, reps,
                          PER_PAIR)
            tflops = 2 * m * n * k / (t * 1e-3) / 1e12
            gbs = (n * k + m * k + m * n) * 2 / (t * 1e-3) / 1e9
            print(f"{m:<6} {n:>5}x{k:<6} {t * 1e3:10.1f} {tflops:9.1f} {gbs:9.0f}")
            rows.append(f"gemm,{m},{n},{k},{t * 1e3:.2f},{tflops:.2f},{gbs:.1f}")
        del ws
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
