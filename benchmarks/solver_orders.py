"""Measured convergence order of every solver on every schedule (the README's slope table).

The same measurement the solver tests assert on (tests/ld3core/solvers/conftest.py): a smooth
3-component 2-D mixture, 8 samples, logSNR steps from T to t_min, RMS error against a float64
DOP853 solution (rtol = atol = 1e-12), least-squares slope of log error over log N.

    .venv/bin/python benchmarks/solver_orders.py            # N = 64, 128, 256
    .venv/bin/python benchmarks/solver_orders.py --ns 16 32 64 128
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
from functools import partial

import torch

from ld3core.analytic import AnalyticDenoiser
from ld3core.heuristics import logsnr
from ld3core.solvers import dpmpp_2m, dpmpp_3m, euler, heun, ipndm, unipc

_spec = importlib.util.spec_from_file_location(
    "solver_fixtures", pathlib.Path(__file__).parents[1] / "tests/ld3core/solvers/conftest.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

SOLVERS = {
    "euler": euler,
    "heun": heun,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_3m": dpmpp_3m,
    "dpmpp_3m_exact": partial(dpmpp_3m, exact_d2=True),
    **{f"unipc_bh{v}_{p}": partial(unipc, order=p, variant=f"bh{v}", lower_order_final=False)
       for p in (1, 2, 3) for v in (1, 2)},
    **{f"ipndm_{p}": partial(ipndm, order=p) for p in (2, 3, 4)},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns", nargs="+", type=int, default=[64, 128, 256])
    args = p.parse_args()
    torch.set_num_threads(1)
    names = list(fx.CONVERGENCE_SCHEDULES)
    refs = {}
    for name in names:
        sch = fx.CONVERGENCE_SCHEDULES[name]()
        x = fx.prior_sample(sch)
        refs[name] = (sch, x, fx.reference_solution(sch, x, sch.T, sch.t_min))
    print(f"Fitted order over N = {args.ns} (logSNR steps; UniPC without lower-order final steps)\n")
    print("| solver | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for solver_name, solver in SOLVERS.items():
        cells = []
        for name in names:
            sch, x, ref = refs[name]
            den = AnalyticDenoiser(fx.MIXTURE, sch)
            errors = [float((solver(den, x, logsnr(sch, n)) - ref).pow(2).mean().sqrt()) for n in args.ns]
            cells.append(f"{fx.fitted_order(args.ns, errors):.2f}")
        print(f"| {solver_name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
