"""Overhead of setforge's shared GAN training loop: seconds per training step of ``dcgan``
through ``DCGAN.fit`` versus the same networks, losses, optimisers and EMA in a bare
hand-written loop.

Batch 64 of 32x32 RGB images (10 classes), interleaved step by step so that both loops see
the same machine load: the benchmark wraps the loop's ``BatchSampler.next`` (called once at the
start of every setforge step) to timestamp each setforge step and run one bare step in
between. The first ``--warmup`` steps of each are discarded. setforge runs with its default
params (checkpoint every 200 steps, losses checked every 10, grids every fifth of the steps:
``grid_every: auto``), and the measured
window (``--steps``, 520 by default) must hold at least one checkpoint and one grid, so the
bookkeeping is in it: a step's time runs from one ``BatchSampler.next`` to the next, so it
includes the checkpoint or grid written at its end. The target compares the *totals* over the
window (bookkeeping included; medians, which leave the rare bookkeeping steps out, are reported
beside them). Target: total overhead <= 5%; the exit status is 1 when it is missed.

    python benchmarks/generate.py [--steps 520] [--device auto] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=520, help="measured steps per loop (the window must hold a "
                                                                 "checkpoint and a grid step)")
    parser.add_argument("--warmup", type=int, default=5, help="steps discarded at the start of each loop")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    total_steps = args.warmup + args.steps + 1
    defaults = {"checkpoint_every": 200, "grid_every": max(1, total_steps // 5)}  # dcgan's (grid_every auto), checked below
    window = range(args.warmup + 1, args.warmup + args.steps + 1)
    missing = [k for k, every in defaults.items() if not any(i % every == 0 for i in window)]
    if missing:
        parser.error(f"the measured window (steps {window.start}..{window.stop - 1}) holds no "
                     f"{' and no '.join(missing)} step; raise --steps")
    if args.threads:
        torch.set_num_threads(args.threads)

    from setforge import Dataset, StepContext
    from setforge.context import resolve_device
    from setforge.plugins.generate import _gan_training as gan_training
    from setforge.plugins.generate._gan_training import init_dcgan_weights, spectral_normalise
    from setforge.plugins.generate.dcgan import DCGAN

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    data_rng = torch.Generator().manual_seed(0)
    rows, classes = 640, 10
    x = torch.rand(rows, 3, args.size, args.size, generator=data_rng)
    y = torch.arange(rows) % classes
    ds = Dataset(x=x, y=y, classes=tuple(str(c) for c in range(classes)), modality="image").to(device)

    # ---- the bare loop: the same networks, losses, Adam and EMA, nothing else
    params = DCGAN.Params(steps=total_steps, batch_size=args.batch)
    if (params.checkpoint_every, params.grid_every) != (defaults["checkpoint_every"], "auto"):
        raise SystemExit("dcgan's checkpoint_every/grid_every defaults changed; update this benchmark's window check")
    init = torch.Generator(device=device).manual_seed(1)
    # the networks as dcgan builds them (its discriminator: by default spectral norm and no batch norm)
    dcgan = DCGAN(params)
    architecture = {"latent_dim": params.latent_dim, "embedding_dim": params.embedding_dim, "num_classes": classes,
                    "channels": 3, "height": args.size, "width": args.size, "base_width": params.width}
    generator = dcgan._build_generator(architecture, device)
    discriminator = dcgan._build_discriminator(architecture, device)
    init_dcgan_weights(generator, init)
    init_dcgan_weights(discriminator, init)
    if params.discriminator_norm == "spectral":
        spectral_normalise(discriminator, init)
    if cuda:
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g_params, ema_params = list(generator.parameters()), list(ema.parameters())
    x_net = ds.x * 2 - 1
    if cuda:
        x_net = x_net.contiguous(memory_format=torch.channels_last)
    bare_rng = torch.Generator(device=device).manual_seed(2)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    softplus = torch.nn.functional.softplus
    bare_iteration = [0]

    def bare_step() -> None:
        bare_iteration[0] += 1
        index = torch.randint(rows, (args.batch,), generator=bare_rng, device=device)
        real, labels = x_net[index], ds.y[index]
        z = torch.randn(args.batch, params.latent_dim, generator=bare_rng, device=device)
        with autocast():
            fake = generator(z, labels)
            d_loss = softplus(-discriminator(real, labels).float()).mean() + \
                softplus(discriminator(fake.detach(), labels).float()).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with autocast():
            g_loss = softplus(-discriminator(fake, labels).float()).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=g_params)
        opt_g.step()
        with torch.no_grad():
            t = bare_iteration[0]
            torch._foreach_lerp_(ema_params, g_params, 1.0 - min(0.999, (1 + t) / (10 + t)))

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # ---- interleave: every setforge step starts with BatchSampler.next; time it and run a bare step there
    # wall-clock seconds, and CPU seconds of this process (on a busy shared CPU the latter is the
    # steadier measure of work done; with several threads it also counts their spinning)
    setforge_times: list[tuple[float, float]] = []
    bare_times: list[tuple[float, float]] = []
    last: list[tuple[float, float] | None] = [None]
    original_next = gan_training.BatchSampler.next

    def clocks() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def since(start: tuple[float, float]) -> tuple[float, float]:
        wall, cpu = clocks()
        return wall - start[0], cpu - start[1]

    def timed_next(self):  # noqa: ANN001
        sync()
        if last[0] is not None:
            setforge_times.append(since(last[0]))
        started = clocks()
        bare_step()
        sync()
        bare_times.append(since(started))
        last[0] = clocks()
        return original_next(self)

    gan_training.BatchSampler.next = timed_next
    try:
        DCGAN(params).fit(ds, StepContext.from_seed(0, device=device))
    finally:
        gan_training.BatchSampler.next = original_next

    setforge_times = setforge_times[args.warmup:]
    bare_times = bare_times[args.warmup:len(setforge_times) + args.warmup]
    median = lambda values, i: statistics.median(v[i] for v in values)  # noqa: E731
    setforge_median, bare_median = median(setforge_times, 0), median(bare_times, 0)
    setforge_cpu, bare_cpu = median(setforge_times, 1), median(bare_times, 1)
    ratio, cpu_ratio = setforge_median / bare_median, setforge_cpu / bare_cpu
    total = lambda values, i: sum(v[i] for v in values)  # noqa: E731
    total_ratio = total(setforge_times, 0) / total(bare_times, 0)
    total_cpu_ratio = total(setforge_times, 1) / total(bare_times, 1)
    result = {
        "benchmark": "generate/dcgan-training-step",
        "device": str(device), "threads": torch.get_num_threads(), "batch": args.batch,
        "image": [3, args.size, args.size], "steps_each": len(setforge_times),
        "setforge_median_s": round(setforge_median, 6), "bare_median_s": round(bare_median, 6),
        "ratio": round(ratio, 4), "overhead_pct": round(100 * (ratio - 1), 2),
        "setforge_cpu_median_s": round(setforge_cpu, 6), "bare_cpu_median_s": round(bare_cpu, 6),
        "cpu_ratio": round(cpu_ratio, 4), "cpu_overhead_pct": round(100 * (cpu_ratio - 1), 2),
        "setforge_total_s": round(total(setforge_times, 0), 4), "bare_total_s": round(total(bare_times, 0), 4),
        "total_ratio": round(total_ratio, 4), "total_overhead_pct": round(100 * (total_ratio - 1), 2),
        "total_cpu_ratio": round(total_cpu_ratio, 4),
        "window": [window.start, window.stop - 1], "checkpoint_every": params.checkpoint_every,
        "grid_every": defaults["grid_every"],
        "target_overhead_pct": 5.0, "ok": total_ratio <= 1.05,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"dcgan training step, batch {args.batch} at {args.size}x{args.size} on {device} "
              f"({result['threads']} threads), median of {len(setforge_times)} interleaved steps each:")
        print(f"  setforge loop {setforge_median * 1e3:8.2f} ms   bare loop {bare_median * 1e3:8.2f} ms   "
              f"ratio {ratio:.3f} ({result['overhead_pct']:+.1f}%, target <= +5%)")
        if not cuda:
            print(f"  CPU time:     {setforge_cpu * 1e3:8.2f} ms              {bare_cpu * 1e3:8.2f} ms   "
                  f"ratio {cpu_ratio:.3f} ({result['cpu_overhead_pct']:+.1f}%)")
        print(f"  totals over steps {window.start}..{window.stop - 1} (checkpoints and grids included): setforge "
              f"{result['setforge_total_s']:.2f} s, bare {result['bare_total_s']:.2f} s, ratio {total_ratio:.3f} "
              f"({result['total_overhead_pct']:+.1f}%, target <= +5%); CPU ratio {total_cpu_ratio:.3f}")
    if not result["ok"]:
        print(f"TARGET MISSED: total overhead {result['total_overhead_pct']:+.1f}% > +5%", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
