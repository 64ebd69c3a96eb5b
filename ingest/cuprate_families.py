"""Assign a cuprate composition to one of the 16 structural families of Goodall et al.

The apical Cu-O distance can only be estimated from lattice parameters family by family
(each family has its own charge-reservoir thickness), so every composition we ingest
needs a family label first. The 16 families and their A-jk(n-1)n notation
(A_j B_k S_(n-1) Cu_n O_(j+k+2n)) follow the thesis, chapter 3, table 3.1.

Rules (all amounts are per formula unit after scaling the Cu site to the family's Cu count):

- Element groups: reservoir cations R = Hg, Tl, Bi (+ Pb, Cr, Re, which only substitute,
  e.g. Bi1.6Pb0.4, Tl0.5Pb0.5, Tl0.75Cr0.25, Hg0.8Re0.2);
  large cations L = Ba, Sr, Ca, Y and the lanthanides (they fill the B_k and S_(n-1)
  sites and the La/RE sites of 214/123/124, which lets Sr<->Ba, La-on-Sr, Y/RE-on-Ca
  and Ca-on-Y substitutions through); Cu site = Cu + minority Cu-site dopants
  (Zn, Ni, Co, Fe, Ga, Al, Li, Mg, Mn; at most 20 % of the site); O site = O + F.
- A family matches when |R - j| <= 0.3, |L - (k + n - 1)| <= 0.35, other elements
  total <= 0.15, O within the family's window (wide enough for oxygen
  non-stoichiometry, e.g. YBa2Cu3O6..O7, HgBa2CuO4+d), Ba+Sr >= 1 on the 2 B sites (not La214),
  and at least half of the S_(n-1) sites are Ca/Y/RE.
- Hg/Tl/Bi families: the reservoir element with the largest amount names the family
  (ties go Hg, Tl, Bi) and must fill at least half of the j reservoir sites.
- Y123/Y124 need no reservoir cation; Y >= 0.5 on the RE site gives Y123/Y124,
  otherwise lanthanides >= 0.5 give RE123/RE124.
- La214 (T) needs La >= 1 of the 2 A sites, no Ce and <= 0.6 other rare earths:
  Ce-doped or RE-rich RE2CuO4 (Nd2CuO4, Nd1.85Ce0.15CuO4, ...) adopt the T' structure
  without apical oxygen, which the thesis leaves out.
- Well-known cuprates outside the 16 (Bi2223, Tl2223, Hg1234, Tl1234) are recognised
  only to give a precise reason; they are `other` with `n_cuo2_planes=None`.
When several families match, the one with the smallest site-total mismatch wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["OTHER", "STUDIED_FAMILIES", "CuprateFamily", "classify_cuprate"]

OTHER = "other"

LANTHANIDES = frozenset(
    "La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu".split()
)
RESERVOIR_PRIMARY = ("Hg", "Tl", "Bi")  # order breaks ties
RESERVOIR = frozenset(RESERVOIR_PRIMARY) | {"Pb", "Cr", "Re"}
SPACER = frozenset({"Ba", "Sr"})
LARGE = SPACER | {"Ca", "Y"} | LANTHANIDES
CU_SITE_DOPANTS = frozenset({"Zn", "Ni", "Co", "Fe", "Ga", "Al", "Li", "Mg", "Mn"})
O_SITE = frozenset({"O", "F"})

RESERVOIR_TOL = 0.3
LARGE_TOL = 0.35
FOREIGN_MAX = 0.15
CU_DOPANT_MAX_FRACTION = 0.2
SPACER_MIN = 1.0  # Ba+Sr on the two B sites; the rest may be La/RE (e.g. TlSrLaCuO5)
LA214_LA_MIN = 1.0
LA214_OTHER_RE_MAX = 0.6
CE_MAX = 0.02


@dataclass(frozen=True)
class CuprateFamily:
    """A family label, its number of CuO2 planes (None for `other`) and why."""

    family: str
    n_cuo2_planes: int | None
    reason: str


@dataclass(frozen=True)
class _Template:
    """Site totals of one family's ideal formula unit."""

    name: str
    kind: str  # "reservoir", "rebco" or "la214"
    cu: float  # Cu per formula unit (also the number of CuO2 planes except 123/124)
    n_planes: int
    reservoir: str | None  # primary reservoir cation
    j: float  # reservoir sites
    large: float  # k + (n - 1) large-cation sites
    s: float  # S_(n-1) sites between the planes
    o_min: float
    o_max: float
    studied: bool = True


def _res(name: str, element: str, j: int, n: int, o: tuple[float, float], studied: bool = True) -> _Template:
    return _Template(name, "reservoir", n, n, element, j, 2 + n - 1, n - 1, *o, studied=studied)


_TEMPLATES: tuple[_Template, ...] = (
    _Template("La214 (T)", "la214", 1, 1, None, 0, 2, 0, 3.7, 4.3),
    # 123 and 124 have one CuO2 bilayer (n = 2) plus chain Cu.
    _Template("Y123", "rebco", 3, 2, None, 0, 3, 1, 5.9, 7.3),
    _Template("Y124", "rebco", 4, 2, None, 0, 3, 1, 7.6, 8.4),
    _res("Tl1201", "Tl", 1, 1, (4.5, 5.5)),
    _res("Tl1212", "Tl", 1, 2, (6.4, 7.5)),
    _res("Tl1223", "Tl", 1, 3, (8.4, 9.5)),
    _res("Tl2201", "Tl", 2, 1, (5.6, 6.5)),
    _res("Tl2212", "Tl", 2, 2, (7.6, 8.5)),
    # Hg layers hold little oxygen: HgBa2Ca(n-1)Cu(n)O(2n+2+d); the upper bound also
    # admits the notation's nominal O(j+k+2n) used in the thesis table.
    _res("Hg1201", "Hg", 1, 1, (3.9, 5.1)),
    _res("Hg1212", "Hg", 1, 2, (5.9, 7.1)),
    _res("Hg1223", "Hg", 1, 3, (7.9, 9.1)),
    _res("Hg2212", "Hg", 2, 2, (7.4, 8.6)),
    _res("Bi2201", "Bi", 2, 1, (5.7, 6.6)),
    _res("Bi2212", "Bi", 2, 2, (7.7, 8.6)),
    # Recognised only to explain why they are `other`.
    _res("Bi2223", "Bi", 2, 3, (9.7, 10.6), studied=False),
    _res("Tl2223", "Tl", 2, 3, (9.6, 10.5), studied=False),
    _res("Hg1234", "Hg", 1, 4, (9.9, 11.1), studied=False),
    _res("Tl1234", "Tl", 1, 4, (10.4, 11.5), studied=False),
)

STUDIED_FAMILIES: tuple[str, ...] = (
    "La214 (T)", "Y123", "RE123", "Y124", "RE124",
    "Tl1201", "Tl1212", "Tl1223", "Tl2201", "Tl2212",
    "Hg1201", "Hg1212", "Hg1223", "Hg2212", "Bi2201", "Bi2212",
)  # fmt: skip


def _symbol(key: object) -> str:
    """Accept str keys as well as pymatgen Element/Species keys (Composition)."""
    return str(getattr(key, "symbol", key))


def _clean(amounts: Mapping[str, float]) -> dict[str, float]:
    clean: dict[str, float] = {}
    for key, value in amounts.items():
        amount = float(value)
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"amount of {_symbol(key)!r} must be finite and >= 0, got {value!r}")
        if amount > 0:
            sym = _symbol(key)
            clean[sym] = clean.get(sym, 0.0) + amount
    return clean


def _total(amounts: Mapping[str, float], elements: frozenset[str] | set[str]) -> float:
    return sum(v for k, v in amounts.items() if k in elements)


def _primary_reservoir(amounts: Mapping[str, float]) -> str | None:
    best = max(RESERVOIR_PRIMARY, key=lambda el: amounts.get(el, 0.0))  # max keeps the first on ties
    return best if amounts.get(best, 0.0) > 0 else None


def _evaluate(t: _Template, x: Mapping[str, float]) -> tuple[float, str | None, str]:
    """Return (mismatch score, failure reason or None, family name) for scaled amounts x."""
    allowed = LARGE | CU_SITE_DOPANTS | O_SITE | {"Cu"}
    if t.kind == "reservoir":
        allowed = allowed | RESERVOIR
    foreign = sum(v for k, v in x.items() if k not in allowed)
    r = _total(x, RESERVOIR)
    big = _total(x, LARGE)
    score = abs(r - t.j) + abs(big - t.large) + foreign
    name = t.name

    if abs(r - t.j) > RESERVOIR_TOL:
        return score, f"reservoir cations (Hg/Tl/Bi/Pb/Cr/Re) {r:.2f}, expected {t.j:g}", name
    if abs(big - t.large) > LARGE_TOL:
        return score, f"large cations (Ba/Sr/Ca/Y/RE) {big:.2f}, expected {t.large:g}", name
    if foreign > FOREIGN_MAX:
        others = ", ".join(sorted(k for k in x if k not in allowed))
        return score, f"foreign elements {others} total {foreign:.2f} > {FOREIGN_MAX}", name
    o = _total(x, O_SITE)
    if not t.o_min <= o <= t.o_max:
        return score, f"O {o:.2f} outside [{t.o_min:g}, {t.o_max:g}]", name
    rare = x.get("Y", 0.0) + _total(x, LANTHANIDES)
    if t.s > 0 and x.get("Ca", 0.0) + rare < 0.5 * t.s:
        return score, f"too little Ca/Y/RE for {t.s:g} site(s) between the CuO2 planes", name

    if t.kind == "la214":
        la = x.get("La", 0.0)
        if x.get("Ce", 0.0) > CE_MAX:
            return score, "Ce-doped RE2CuO4 adopts the T' structure (no apical O), not La214 (T)", name
        if la < LA214_LA_MIN:
            return score, f"La {la:.2f} < {LA214_LA_MIN}: RE2CuO4 without La is T', not La214 (T)", name
        if rare - la > LA214_OTHER_RE_MAX:
            return score, f"{rare - la:.2f} non-La rare earth on the La site: T'/T* territory", name
        return score, None, name

    if _total(x, SPACER) < SPACER_MIN:
        return score, f"Ba+Sr {_total(x, SPACER):.2f} < {SPACER_MIN} on the two B sites", name

    if t.kind == "rebco":
        suffix = name[1:]  # "123" or "124"
        if x.get("Y", 0.0) >= 0.5:
            return score, None, f"Y{suffix}"
        if _total(x, LANTHANIDES) >= 0.5:
            return score, None, f"RE{suffix}"
        return score, "neither Y nor a rare earth fills the RE site", name

    primary = _primary_reservoir(x)
    if primary != t.reservoir:
        return score, f"main reservoir cation is {primary}, not {t.reservoir}", name
    if x[primary] < 0.5 * t.j - 1e-9:
        return score, f"{primary} {x[primary]:.2f} fills less than half of {t.j:g} reservoir site(s)", name
    return score, None, name


def _per_cu(amounts: Mapping[str, float], cu_site: float) -> str:
    parts = sorted(amounts.items(), key=lambda kv: kv[0])
    return " ".join(f"{k}{v / cu_site:.3g}" for k, v in parts)


def classify_cuprate(amounts: Mapping[str, float]) -> CuprateFamily:
    """Classify a (possibly doped, fractional) composition into a thesis cuprate family.

    `amounts` maps element symbols (or pymatgen Elements) to amounts in any
    normalisation. Non-cuprates and cuprates outside the 16 families give `other`.
    """
    x = _clean(amounts)
    if x.get("Cu", 0.0) <= 0:
        return CuprateFamily(OTHER, None, "no Cu")
    if _total(x, O_SITE) <= 0:
        return CuprateFamily(OTHER, None, "no O: not an oxide")
    dopants = _total(x, CU_SITE_DOPANTS)
    cu_site = x["Cu"] + dopants
    if dopants > CU_DOPANT_MAX_FRACTION * cu_site:
        return CuprateFamily(
            OTHER, None, f"Cu-site dopants are {dopants / cu_site:.0%} of the Cu site (> 20 %)"
        )

    evaluated = []
    for t in _TEMPLATES:
        scale = t.cu / cu_site
        scaled = {k: v * scale for k, v in x.items()}
        score, failure, name = _evaluate(t, scaled)
        evaluated.append((score, failure, name, t))

    matches = sorted((e for e in evaluated if e[1] is None), key=lambda e: e[0])
    studied = [e for e in matches if e[3].studied]
    if studied:
        score, _, name, t = studied[0]
        return CuprateFamily(name, t.n_planes, f"{name}: site totals within tolerance (mismatch {score:.2f})")
    if matches:
        name = matches[0][2]
        return CuprateFamily(OTHER, None, f"matches {name}, which is not among the 16 studied families")
    score, failure, name, _ = min(evaluated, key=lambda e: e[0])
    return CuprateFamily(
        OTHER, None, f"no family matches (per Cu: {_per_cu(x, cu_site)}); closest {name}: {failure}"
    )
