"""Wren against Roost on the same machine: building inputs, training samples/s and inference rate.

1. Inputs: the protostructure labels of the 10,904 3DSC Materials Project rows (``../shared/data/supercon``:
   ``3dsc_mp_lattice_tc_derived.csv`` and ``3dsc_mp_cifs.tar.xz``). 3DSC's CIFs are doped (partially occupied
   sites), which have no Wyckoff representation as they are; here each row gets the label of its Materials
   Project parent (every site given its majority element), computed once per mp-id with moyopy and cached in
   ``--cache``. Without the data, 10,904 labels are generated from the AFLOW prototypes shipped with pymatgen
   with random element substitutions. Timed: ``WyckoffGraphs.from_labels`` over all rows with a cold template
   cache and a warm one, beside ``CompositionGraphs.from_compositions`` over the same rows' compositions.
2. Training: the thesis-size models (Roost app. A.1, Wren app. A.3), batch 128, one optimiser step per call
   (slice, forward, robust loss, backward, Adam/AdamW); samples (crystals) per second, fastest and median call.
3. Inference: crystals per second in batches of 1,024 (Wren includes every equivalent representation).

Wren's cost follows its edges: every equivalent representation is a dense graph of its (merged) Wyckoff
positions, so a few large, high-symmetry labels (here up to 48 representations and 6,336 edges for one crystal,
65 on average) dominate the batches that hold them; ``--max-wyckoff 16`` applies the thesis' cleaning rule
(fewer than 16 positions) first.

Measured on an idle 2-core machine, all 10,904 rows, after the attention change to both models: inputs built in
0.22 s cold / 0.08 s warm (Roost 0.09 s); Wren / Roost 0.61x training and 0.70x inference, medians of paired calls.
An earlier run beside other benchmarks gave 0.81x and 0.70x (before merging identical positions: 0.54x and 0.28x).

Run: python bench/bench_wren_speed.py [--threads 2] [--steps 20] [--repeats 3] [--max-wyckoff 16]
       [--cache /tmp/3dsc_labels.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import threedsc_parents
import torch

from matlake.modelling.losses import robust_l1_loss
from matlake.modelling.train import element_table, model_inputs, new_model
from matlake.modelling.wyckoff_graphs import protostructure_composition


def threedsc_labels(cache: Path) -> list[str] | None:
    """One protostructure label per 3DSC MP row (the parent structure of its mp-id), or None without data."""
    if not threedsc_parents.available():
        return None
    by_mp = threedsc_parents.parent_labels(cache)
    return [by_mp[r["mp_id"]] for r in threedsc_parents.rows() if by_mp.get(r["mp_id"])]


def generated_labels(n: int, rng: np.random.Generator) -> list[str]:
    """AFLOW prototypes decorated with random distinct elements (only the label's shape matters for speed)."""
    from matlake.featurestore.protostructure import load_aflow_prototypes, protostructure_row

    symbols = list(element_table()[1])[:83]
    prototypes = [protostructure_row(s)["protostructure"].split(":") for _, s in load_aflow_prototypes()]
    out = []
    for k in rng.integers(0, len(prototypes), size=n):
        prototype, system = prototypes[k]
        elements = sorted(rng.choice(symbols, size=len(system.split("-")), replace=False).tolist())
        out.append(f"{prototype}:{'-'.join(elements)}")
    return out


def time_alternating(calls: dict[str, Callable[[int], None]], n_calls: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each ``calls[name](i)``, the names taking turns call by call."""
    for call in calls.values():
        call(0)  # warm-up: allocator, thread pool, first-call dispatch
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for i in range(n_calls):
            for name, call in calls.items():
                start = time.perf_counter()
                call(i)
                seconds[name].append(time.perf_counter() - start)
    return seconds


def rates(seconds: list[float], per_call: int) -> tuple[float, float]:
    return per_call / min(seconds), per_call / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--cache", type=Path, default=threedsc_parents.DEFAULT_CACHE)
    parser.add_argument("--max-wyckoff", type=int, default=None, help="keep labels with fewer positions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    labels = threedsc_labels(args.cache)
    origin = "3DSC MP rows (parent-structure labels)"
    if labels is None:
        labels, origin = generated_labels(10_904, rng), "generated from AFLOW prototypes"
    if args.max_wyckoff:
        from matlake.featurestore.protostructure import count_wyckoff_positions

        labels = [lab for lab in labels if count_wyckoff_positions(lab) < args.max_wyckoff]
        origin += f", fewer than {args.max_wyckoff} Wyckoff positions"
    compositions = [protostructure_composition(lab) for lab in labels]
    print(f"{len(labels)} labels, {len(set(labels))} distinct, {origin}")

    from matlake.modelling import wyckoff_graphs

    element_table()  # load the embedding tables outside the timings
    model_inputs("wren", labels[:1])
    wyckoff_graphs._template.cache_clear()  # cold: every prototype expanded again
    started = time.perf_counter()
    wren_graphs = model_inputs("wren", labels)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    model_inputs("wren", labels)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    roost_graphs = model_inputs("roost", compositions)
    roost_build = time.perf_counter() - started
    print(f"build inputs: Wren {cold:.2f} s cold, {warm:.2f} s warm ({wren_graphs.n_graphs} graphs, "
          f"{wren_graphs.n_nodes} nodes, {wren_graphs.n_edges} edges, {wren_graphs.n_graphs / len(labels):.2f} "
          f"representations per label); "
          f"Roost {roost_build:.2f} s")

    y = torch.randn(len(labels))
    batches = [torch.from_numpy(rng.choice(len(labels), size=args.batch, replace=False)) for _ in range(args.steps)]
    chunk = 1024
    starts = list(range(0, len(labels) - chunk + 1, chunk))[: max(1, args.steps // 2)]
    train_calls, infer_calls = {}, {}
    for name, graphs in (("roost", roost_graphs), ("wren", wren_graphs)):
        train_calls[name], infer_calls[name] = _calls(name, graphs, y, batches, starts, chunk)
    # the two models run call by call in alternation on the same crystals, so a machine shared with other
    # work slows both alike; the per-call ratios are paired, the rates are what each call achieved
    train_s = time_alternating(train_calls, len(batches), args.repeats)
    infer_s = time_alternating(infer_calls, len(starts), args.repeats)
    for name in ("roost", "wren"):
        (tf, tm), (inf_f, inf_m) = rates(train_s[name], args.batch), rates(infer_s[name], chunk)
        print(f"{name}: train {tf:,.0f} samples/s fastest call, {tm:,.0f} median; inference {inf_f:,.0f} "
              f"crystals/s fastest, {inf_m:,.0f} median")
    train_ratio = statistics.median(r / w for r, w in zip(train_s["roost"], train_s["wren"]))
    infer_ratio = statistics.median(r / w for r, w in zip(infer_s["roost"], infer_s["wren"]))
    print(f"Wren / Roost speed, median of paired calls: training {train_ratio:.2f}x, inference {infer_ratio:.2f}x "
          f"({args.threads} threads, batch {args.batch}, inference chunks of {chunk})")


def _calls(name: str, graphs, y: torch.Tensor, batches: list[torch.Tensor], starts: list[int],
           chunk: int) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """A training step and an inference call of a thesis-size model of ``name`` on ``graphs``."""
    torch.manual_seed(0)
    model = new_model(name, {})
    optimiser = (torch.optim.AdamW if name == "wren" else torch.optim.Adam)(model.parameters(), lr=3e-4,
                                                                          weight_decay=1e-6)
    print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

    def train_step(i: int) -> None:
        model.train()
        mu, log_sigma = model(graphs.slice(batches[i]))
        loss = robust_l1_loss(mu.squeeze(1), log_sigma.squeeze(1), y[batches[i]])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    @torch.inference_mode()
    def infer(i: int) -> None:
        model.eval()
        model(graphs.slice(torch.arange(starts[i], starts[i] + chunk)))

    return train_step, infer

if __name__ == "__main__":
    main()
