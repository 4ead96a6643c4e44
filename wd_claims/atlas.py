"""An invariance atlas: which parameter tensors of the architectures people train are
scale-invariant — and so subject to the article's mechanism — by which normalization, exactly or
up to its ε, alone or only jointly, and what fraction of the parameters that is (issue 24).

    python -m wd_claims.atlas                          # every architecture → docs/atlas.md, .png
    python -m wd_claims.atlas resnet18 gpt_qk_norm     # some, printed, docs untouched

Per architecture, randomly initialized (nothing downloaded), float64, training mode (batch
statistics), at a generic point (every parameter perturbed by 20 % of its RMS), on a reduced input
(a batch of 2 at 64×64, ViT-B/16 at 32×32: the invariances are properties of the graph, not of
the image size; at 32×32 a CNN's last stage is 1×1, and a BatchNorm over two values degenerate):

1. :func:`wd_claims.invariance.scale_invariance_map` with every ``eps`` ≈ 0: the invariant tensors
   and the normalization that absorbs each one's scale (forward hooks);
2. :func:`wd_claims.invariance.joint_invariant_groups`: tensors invariant only when rescaled
   together (e.g. a normalization's γ and β feeding ReLU → conv → normalization);
3. with the model's own ε, each invariant tensor's deviation scanned over ρ = 2⁻⁴⁰ … 2²⁰
   (:func:`wd_claims.epsilon.scan`): exact, or up to ε with the fitted exponent (2: ε on a
   variance, 1: on a standard deviation; :func:`wd_claims.epsilon.law`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

INPUT = (3, 64, 64)   # at 32×32 the last stage sees 1×1 × a batch of 2: a degenerate BatchNorm
BATCH = 2


def _tv(name: str, **kw):
    def build():
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None, **kw)
    return build


def _gpt(qk_norm: bool):
    def build():
        from wd_claims.models.gpt import TinyGPT

        return TinyGPT(qk_norm=qk_norm)
    return build


# name → (factory, input shape without the batch, what was reduced)
ARCHITECTURES = MappingProxyType({
    "resnet18": (_tv("resnet18"), INPUT, "64×64 input"),
    "resnet50": (_tv("resnet50"), INPUT, "64×64 input"),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), INPUT, "64×64 input"),
    "efficientnet_b0": (_tv("efficientnet_b0"), INPUT, "64×64 input"),
    "regnet_y_400mf": (_tv("regnet_y_400mf"), INPUT, "64×64 input"),
    "convnext_tiny": (_tv("convnext_tiny"), INPUT, "64×64 input"),
    "vit_b_16": (_tv("vit_b_16", image_size=32), (3, 32, 32), "32×32 input: 4 patches of 16×16"),
    "swin_t": (_tv("swin_t"), INPUT, "64×64 input"),
    "gpt": (_gpt(False), (16, 64), "2 pre-LN blocks, width 64, 16 tokens"),
    "gpt_qk_norm": (_gpt(True), (16, 64), "the same with QK-norm (LayerNorm per head)"),
})


@dataclass
class Entry:
    """One architecture's row of the atlas."""

    name: str
    reduced: str
    tensors: int
    params: int
    invariant: list[str]                 # individually invariant tensors (ε ≈ 0)
    invariant_params: int
    by_norm: dict[str, list[int]]        # normalization class → [tensors, parameters]
    with_eps: dict[str, int]             # "exact" / "up to ε, p = 2" / … → tensors
    joint: list[list[str]]               # jointly invariant groups
    joint_params: int
    seconds: float
    exponents: list[float] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.invariant_params / self.params

    @property
    def joint_fraction(self) -> float:
        return self.joint_params / self.params


def _own_eps_kinds(model, shape, names) -> tuple[Counter, list[float]]:
    """With the model's own ε: per invariant tensor exact or up to ε (and the exponents)."""
    import torch

    from wd_claims import epsilon
    from wd_claims.invariance import _probe_setup, relative_change
    from wd_claims.probes import forward_footprint, rescaled, rounding_tolerance

    twin, x = _probe_setup(model, shape, BATCH, 0, exact_eps=False)
    tol = rounding_tolerance(2, *forward_footprint(twin, x))
    kinds, exponents = Counter(), []
    with torch.no_grad():
        base = twin(x)
    for name in names:
        with torch.no_grad():
            worst = 0.0
            for rho in epsilon.SCREEN:   # against ρ = 1, as the detector: exact?
                with rescaled(twin, name, rho):
                    worst = max(worst, relative_change(twin(x), base))
        if worst <= tol:
            kinds["exact"] += 1
            continue
        law = epsilon.law(epsilon.SCAN_RHOS, epsilon.scan(twin, x, name), tol)
        if law.fades:
            kinds[f"up to ε, p = {law.nearest}"] += 1
            exponents.append(law.exponent)
        else:
            kinds["not resolved with its own ε"] += 1
    return kinds, exponents


def survey(name: str) -> Entry:
    """Measure one architecture of :data:`ARCHITECTURES`."""
    import torch

    from wd_claims.invariance import joint_invariant_groups, scale_invariance_map

    factory, shape, reduced = ARCHITECTURES[name]
    start = time.perf_counter()
    torch.manual_seed(0)
    model = factory()
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    reports = scale_invariance_map(model, shape, batch=BATCH)
    invariant = [r for r in reports if r.invariant]
    groups = joint_invariant_groups(model, shape, batch=BATCH, reports=reports)
    by_norm: dict[str, list[int]] = {}
    for r in invariant:
        cls = r.normalization.split("(")[-1].rstrip(")").split(",")[0] if r.normalization \
            else "no absorbing module"
        row = by_norm.setdefault(cls, [0, 0])
        row[0], row[1] = row[0] + 1, row[1] + sizes[r.name]
    kinds, exponents = _own_eps_kinds(model, shape, [r.name for r in invariant])
    return Entry(name=name, reduced=reduced, tensors=len(sizes), params=sum(sizes.values()),
                 invariant=[r.name for r in invariant],
                 invariant_params=sum(sizes[r.name] for r in invariant), by_norm=by_norm,
                 with_eps=dict(kinds), joint=[list(g.names) for g in groups],
                 joint_params=sum(sizes[n] for g in groups for n in g.names),
                 seconds=time.perf_counter() - start, exponents=exponents)


def render(entries: list[Entry], command: str) -> str:
    """The atlas as markdown (docs/atlas.md)."""
    lines = [
        "# Invariance atlas", "",
        "Which parameter tensors of common architectures are scale-invariant — and so follow the "
        "article's mechanism: weight decay sets their effective learning rate rather than their "
        "capacity — found by probing, not by names (`wd_claims/atlas.py` says how). Regenerate:",
        "", f"```bash\n{command}\n```", "",
        "Randomly initialized, float64, training mode (batch statistics), a batch of "
        f"{BATCH}; every parameter perturbed by 20 % of its RMS so that no tensor is invariant "
        "by the accident of its initial value. *Invariant*: with every ε ≈ 0, the logits change "
        "under w → ρw (ρ = 2⁻³, 2⁵) by no more than the forward pass's float64 rounding "
        "bound. *With its own ε*: the same tensors in the model as built, exact or up to "
        "ε with the exponent the deviation fades with (2: ε on a variance, 1: on a standard "
        "deviation; `wd_claims.epsilon`). *Jointly*: groups of tensors, none invariant alone, "
        "that are invariant rescaled together. *No absorbing module*: invariant, but no single "
        "module's input is ρ× while its output is unchanged — e.g. a normalization's β feeding a "
        "1×1 convolution and the next normalization, whose mean subtraction removes it whatever "
        "its scale.", "",
        "| architecture | reduced | tensors | parameters | invariant tensors | % of parameters "
        "| by normalization (tensors, % of parameters) | with its own ε | jointly invariant "
        "groups (% of parameters) | seconds |",
        "|---|---|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for e in entries:
        norms = "; ".join(f"{k} ({v[0]}, {100 * v[1] / e.params:.1f} %)"
                          for k, v in sorted(e.by_norm.items(), key=lambda kv: -kv[1][1])) or "–"
        eps = "; ".join(f"{k}: {v}" for k, v in sorted(e.with_eps.items())) or "–"
        lines.append(f"| {e.name} | {e.reduced} | {e.tensors} | {e.params:,} | "
                     f"{len(e.invariant)} | {100 * e.fraction:.1f} | {norms} | {eps} | "
                     f"{len(e.joint)} ({100 * e.joint_fraction:.1f} %) | {e.seconds:.0f} |")
    lines += ["", "![fraction of parameters that are scale-invariant](atlas.png)", "",
              "## Jointly invariant groups, one example per architecture", ""]
    for e in entries:
        if e.joint:
            lines.append(f"- {e.name}: {len(e.joint)} groups, e.g. "
                         + ", ".join(f"`{n}`" for n in e.joint[0]))
    lines += ["", "## Reading it", "",
              "The classifier, every bias and every normalization gain feeding a nonlinearity "
              "before the next normalization is not invariant alone; where the next layer is "
              "normalized again, a gain and its bias are invariant jointly. A kernel is invariant "
              "when a normalization follows it before any nonlinearity or residual sum. In a "
              "pre-LN transformer nothing is: every projection feeds a residual sum, not a "
              "normalization; QK-norm makes the query and key kernels invariant.", ""]
    return "\n".join(lines)


def draw(entries: list[Entry], path: Path) -> None:
    """Horizontal bars: % of parameters invariant alone and jointly, per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(entries) + 1.2))
    names = [e.name for e in entries][::-1]
    alone = [100 * e.fraction for e in entries][::-1]
    jointly = [100 * e.joint_fraction for e in entries][::-1]
    ax.barh(names, alone, color="C0", label="invariant alone")
    ax.barh(names, jointly, left=alone, color="C1", label="invariant only jointly")
    ax.set(xlabel="% of parameters scale-invariant", xlim=(0, 100),
           title="Scale-invariant parameters (wd_claims.atlas)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wd_claims.atlas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"architectures (default: all of "
                                                 f"{', '.join(ARCHITECTURES)})")
    parser.add_argument("--docs", type=Path, default=Path("docs"),
                        help="where atlas.md, atlas.png and atlas.json go (only with no names)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ARCHITECTURES]
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; choose from {list(ARCHITECTURES)}")
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    entries = []
    for name in args.names or ARCHITECTURES:
        entry = survey(name)
        print(f"{name}: {len(entry.invariant)}/{entry.tensors} tensors invariant "
              f"({100 * entry.fraction:.1f} % of {entry.params:,} parameters), "
              f"{len(entry.joint)} joint groups, own ε {entry.with_eps}, "
              f"{entry.seconds:.0f} s", flush=True)
        entries.append(entry)
    if not args.names:
        args.docs.mkdir(parents=True, exist_ok=True)
        (args.docs / "atlas.md").write_text(render(entries, "python -m wd_claims.atlas"))
        (args.docs / "atlas.json").write_text(json.dumps(
            [asdict(e) for e in entries], indent=1, default=lambda v: None
            if isinstance(v, float) and math.isnan(v) else v))
        draw(entries, args.docs / "atlas.png")
        print(f"wrote {args.docs / 'atlas.md'}, atlas.png, atlas.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
