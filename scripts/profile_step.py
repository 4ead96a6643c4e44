"""Where a configuration-step of the engine goes, against its FLOP floor.

    python scripts/profile_step.py [WIDTH] [BATCH]      # default 8 8: the article budget's size

Trains K = 9 ResNet-8 configurations (every parameter, the digits, one torch thread) for 64 steps
under ``torch.profiler`` after a warm-up, and prints the ms per configuration-step by operator
group (self CPU time: convolutions backward and forward, BatchNorm, everything else), beside the
step's FLOP floor: its FLOPs (``torch.utils.flop_counter``) at the float32 matmul peak measured in
this process. The profiler's own overhead makes the total a little larger than unprofiled.
"""

from __future__ import annotations

import sys

import torch
from wd_claims.models import resnet8

from wd_claims.benchmark import matmul_peak_flops, training_flops_per_image
from wd_claims.data import DeviceData
from wd_claims.datasets import load_digits_split
from wd_claims.train import TrainConfig, train

K, STEPS = 9, 64
GROUPS = {"convolutions, backward": ("aten::convolution_backward",),
          "convolutions, forward": ("aten::mkldnn_convolution", "aten::thnn_conv2d",
                                    "aten::_slow_conv2d_forward"),
          "BatchNorm": ("aten::native_batch_norm", "aten::native_batch_norm_backward")}


def main(width: int = 8, batch: int = 8) -> None:
    torch.set_num_threads(1)
    images, _ = load_digits_split(1437, 1)
    data = DeviceData.from_images(images)

    def config(steps: int) -> TrainConfig:
        return TrainConfig(etas=(0.1,) * K, lams=(1e-3,) * K, steps=steps, batch_size=batch,
                           width=width, evaluate=False, data=data.name, n_train=len(data))

    train(config(4), data, progress=False)                       # warm-up: probe, kernels
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train(config(STEPS), data, progress=False)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    per_step = 1e-3 / (STEPS * K)                                 # µs in total → ms per step
    total = sum(self_us.values()) * per_step
    floor = 1e3 * training_flops_per_image(resnet8(width=width)) * batch / matmul_peak_flops()
    print(f"ResNet-8 width {width}, batch {batch}, K = {K}, 1 thread: {total:.2f} ms per "
          f"configuration-step (profiled); FLOP floor {floor:.2f} ms ({total / floor:.1f}×)")
    grouped = 0.0
    for name, ops in GROUPS.items():
        ms = sum(self_us.get(op, 0.0) for op in ops) * per_step
        grouped += ms
        print(f"  {name:<24} {ms:5.2f} ms ({100 * ms / total:4.1f} %)")
    print(f"  {'everything else':<24} {total - grouped:5.2f} ms "
          f"({100 * (total - grouped) / total:4.1f} %)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
