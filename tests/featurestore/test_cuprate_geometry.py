"""In-plane and apical Cu-O distances on hand-built cells and on the shared MP cuprates."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from matlake.featurestore.cuprate_geometry import (
    CuSiteGeometry,
    cu_o_distances,
    cuo2_plane_normals,
    stacking_axis,
    summarise,
)
from matlake.ingest.cuprate_families import classify_cuprate

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CUPRATE_CIFS = SHARED_DATA / "cuprates"

# file -> (in-plane, apical) in A, from the MP structures (thesis ranges for these families)
EXPECTED = {
    "mp-20674.cif": (1.95, 2.30),  # YBa2Cu3O7
    "Cu1La2O4-MP-mp-19735.cif": (1.91, 2.46),  # La2CuO4, I4/mmm
    "Bi2Ca1Cu2Sr2O8-MP-mp-555855.cif": (1.88, 2.71),  # Bi2212
    "mp-6562.cif": (1.97, 2.90),  # Hg1201
}


def la2cuo4(a: float = 3.80, c: float = 13.20, z_apical: float = 0.1828) -> Structure:
    """T-structure La2CuO4 (I4/mmm): in-plane a/2, apical z_apical * c, octahedral Cu."""
    return Structure.from_spacegroup(
        "I4/mmm",
        Lattice.tetragonal(a, c),
        ["La", "Cu", "O", "O"],
        [[0, 0, 0.3607], [0, 0, 0], [0, 0.5, 0], [0, 0, z_apical]],
    )


def ybco(a: float = 3.82, b: float = 3.89, c: float = 11.68) -> Structure:
    """YBa2Cu3O7 (Pmmm) with buckled planes (Cu2 at z=0.355, O2/O3 at 0.378) and CuO chains."""
    return Structure.from_spacegroup(
        "Pmmm",
        Lattice.orthorhombic(a, b, c),
        ["Y", "Ba", "Cu", "Cu", "O", "O", "O", "O"],
        [[0.5, 0.5, 0.5], [0.5, 0.5, 0.184], [0, 0, 0], [0, 0, 0.355],
         [0, 0.5, 0], [0.5, 0, 0.378], [0, 0.5, 0.378], [0, 0, 0.159]],
    )  # fmt: skip


def hg1212(a: float = 3.85, c: float = 12.70) -> Structure:
    """HgBa2CaCu2O6 (P4/mmm): pyramidal Cu, apical 0.215 c, planes 0.25 c apart across Ca."""
    return Structure.from_spacegroup(
        "P4/mmm",
        Lattice.tetragonal(a, c),
        ["Hg", "Ba", "Ca", "Cu", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.22], [0.5, 0.5, 0.5], [0, 0, 0.375], [0.5, 0, 0.375], [0, 0, 0.16]],
    )


def nd2cuo4(a: float = 3.94, c: float = 12.15) -> Structure:
    """T' Nd2CuO4 (I4/mmm): square-planar Cu without apical O."""
    return Structure.from_spacegroup(
        "I4/mmm",
        Lattice.tetragonal(a, c),
        ["Nd", "Cu", "O", "O"],
        [[0, 0, 0.3526], [0, 0, 0], [0, 0.5, 0], [0, 0.5, 0.25]],
    )


def test_la2cuo4_octahedral_site() -> None:
    geoms = cu_o_distances(la2cuo4())
    assert len(geoms) == 2  # corner and body-centre Cu of the conventional cell
    for g in geoms:
        assert isinstance(g, CuSiteGeometry)
        assert g.in_plane == pytest.approx(1.90, abs=1e-6)
        assert g.apical_bonds == pytest.approx((0.1828 * 13.2,) * 2, abs=1e-6)
        assert g.apical == pytest.approx(0.1828 * 13.2, abs=1e-6)
        assert g.buckling == pytest.approx(0.0, abs=1e-9)


def test_primitive_cell_gives_the_same_distances() -> None:
    """The stacking axis comes from the lattice, not from lattice vector c."""
    conventional = la2cuo4()
    primitive = conventional.get_primitive_structure()
    assert not math.isclose(primitive.lattice.angles[0], 90.0)
    assert summarise(cu_o_distances(primitive)) == pytest.approx(summarise(cu_o_distances(conventional)))
    assert abs(stacking_axis(primitive.lattice) @ [0, 0, 1]) == pytest.approx(1.0)


def test_ybco_skips_chain_cu_and_handles_buckling() -> None:
    structure = ybco()
    geoms = cu_o_distances(structure)
    assert sorted(structure[g.site_index].frac_coords[2] % 1 for g in geoms) == pytest.approx([0.355, 0.645])
    buckle = (0.378 - 0.355) * 11.68
    in_plane = np.mean([math.hypot(3.82 / 2, buckle), math.hypot(3.89 / 2, buckle)])
    for g in geoms:
        assert g.buckling == pytest.approx(buckle, abs=1e-6)
        assert g.in_plane == pytest.approx(in_plane, abs=1e-6)
        assert g.apical_bonds == pytest.approx(((0.355 - 0.159) * 11.68,), abs=1e-6)


def test_neighbouring_plane_oxygen_is_not_apical() -> None:
    """Even with a cutoff that reaches the next CuO2 plane, only the true apex counts."""
    geoms = cu_o_distances(hg1212(), apical_cutoff=4.0)
    assert len(geoms) == 2
    for g in geoms:
        assert g.apical_bonds == pytest.approx(((0.375 - 0.16) * 12.70,), abs=1e-6)


def test_long_apical_bond_needs_a_generous_cutoff() -> None:
    hg1201 = Structure.from_spacegroup(
        "P4/mmm",
        Lattice.tetragonal(3.88, 9.50),
        ["Hg", "Ba", "Cu", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.30], [0, 0, 0.5], [0.5, 0, 0.5], [0, 0, 0.2]],
    )
    assert summarise(cu_o_distances(hg1201)) == pytest.approx((1.94, 0.3 * 9.5))
    assert summarise(cu_o_distances(hg1201, apical_cutoff=2.5)) == pytest.approx((1.94, None))


def test_t_prime_has_no_apical_oxygen() -> None:
    geoms = cu_o_distances(nd2cuo4())
    assert len(geoms) == 2
    assert all(g.apical is None and g.apical_bonds == () for g in geoms)
    assert summarise(geoms) == pytest.approx((3.94 / 2, None))


def test_structure_without_planes_gives_nothing() -> None:
    cuprite = Structure.from_spacegroup("Pn-3m", Lattice.cubic(4.27), ["Cu", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert cu_o_distances(cuprite) == []
    with pytest.raises(ValueError, match="no CuO2-plane"):
        summarise([])


def test_bad_stacking_axis_raises() -> None:
    with pytest.raises(ValueError, match="stacking axis"):
        cu_o_distances(la2cuo4(), stacking_axis_cartesian=[0, 0, 0])


def test_explicit_stacking_axis_matches_default() -> None:
    found = cu_o_distances(ybco())
    given = cu_o_distances(ybco(), stacking_axis_cartesian=[0, 0, 2])
    assert {g.axis_from for g in found} == {"cuo4_squares"} and {g.axis_from for g in given} == {"given"}
    assert [replace(g, axis_from="given") for g in found] == given


def infinite_layer(a: float = 3.86, c: float = 3.20) -> Structure:
    """CaCuO2 (P4/mmm): square-planar Cu, CuO2 planes c = 3.20 A apart, closer than the 3.86 A in-plane period."""
    return Structure.from_spacegroup(
        "P4/mmm", Lattice.tetragonal(a, c), ["Ca", "Cu", "O"], [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]]
    )


def test_infinite_layer_planes_closer_than_the_in_plane_period() -> None:
    structure = infinite_layer()
    assert abs(stacking_axis(structure.lattice) @ [0, 0, 1]) < 0.5  # the lattice-plane normal lies in the plane
    [g] = cu_o_distances(structure)
    assert g.in_plane_bonds == pytest.approx((3.86 / 2,) * 4)
    assert g.apical is None and g.apical_bonds == ()  # the O of the next plane is 3.74 A off, at 59 degrees
    assert g.buckling == pytest.approx(0.0, abs=1e-9)
    assert g.axis_from == "cuo4_squares" and abs(np.dot(g.axis, [0, 0, 1])) == pytest.approx(1.0)


def test_normal_found_in_a_sheared_rotated_cell() -> None:
    """The plane normal is neither a lattice vector nor a Cartesian axis: it still comes out of the CuO4 squares."""
    sheared = infinite_layer()
    sheared.make_supercell([[1, 0, 0], [0, 1, 0], [1, 1, 1]])
    rotation = Rotation.from_rotvec([0.4, -0.7, 0.3]).as_matrix()
    structure = Structure(Lattice(sheared.lattice.matrix @ rotation.T), sheared.species, sheared.frac_coords)
    normal = rotation @ [0, 0, 1]
    assert max(abs(v @ normal) / np.linalg.norm(v) for v in structure.lattice.matrix) < 0.95
    assert max(abs(normal)) < 0.95
    [g] = cu_o_distances(structure)
    assert abs(np.dot(g.axis, normal)) == pytest.approx(1.0, abs=1e-9)
    assert g.in_plane_bonds == pytest.approx((3.86 / 2,) * 4) and g.apical is None

    la2cuo4_rotated = la2cuo4().get_primitive_structure()
    la2cuo4_rotated = Structure(Lattice(la2cuo4_rotated.lattice.matrix @ rotation.T), la2cuo4_rotated.species,
                                la2cuo4_rotated.frac_coords)
    [g] = cu_o_distances(la2cuo4_rotated)
    assert abs(np.dot(g.axis, normal)) == pytest.approx(1.0, abs=1e-9)
    assert (g.in_plane, g.apical) == pytest.approx((1.90, 0.1828 * 13.2))


def test_chain_square_of_y123_is_not_a_plane() -> None:
    """Y123's chain Cu has a planar O1-O4 square too, but its apical O4 corners belong to no other Cu's square."""
    structure = ybco()
    chain = next(i for i, site in enumerate(structure) if site.specie.symbol == "Cu" and site.frac_coords[2] == 0)
    assert chain not in cuo2_plane_normals(structure)
    assert len(cuo2_plane_normals(structure)) == 2


def test_isolated_square_falls_back_to_the_lattice_axis() -> None:
    """A CuO4 square that shares no corner is no plane; the lattice-plane normal is the fallback, and says so."""
    molecule = Structure(Lattice.tetragonal(8.0, 12.0), ["Cu", "O", "O", "O", "O"],
                         [[0, 0, 0], [0.24, 0, 0], [-0.24, 0, 0], [0, 0.24, 0], [0, -0.24, 0]])
    assert cuo2_plane_normals(molecule) == {}
    [g] = cu_o_distances(molecule)
    assert g.axis_from == "lattice" and abs(np.dot(g.axis, [0, 0, 1])) == pytest.approx(1.0)
    assert g.in_plane == pytest.approx(0.24 * 8.0)


@pytest.mark.shared_data
@pytest.mark.skipif(not CUPRATE_CIFS.is_dir(), reason=f"shared cuprate CIFs {CUPRATE_CIFS} are absent")
def test_shared_mp_cuprates() -> None:
    files = sorted(CUPRATE_CIFS.glob("*.cif"))
    assert len(files) == 9
    print(f"\n{'file':<34} {'formula':<16} {'family':<10} {'sites':>5} {'in-plane':>8} {'apical':>7}")
    summaries = {}
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
        geoms = cu_o_distances(structure)
        family = classify_cuprate(structure.composition).family
        in_plane, apical = summarise(geoms)
        summaries[path.name] = (in_plane, apical, geoms, family)
        apical_text = f"{apical:7.3f}" if apical is not None else "   none"
        print(f"{path.name:<34} {structure.composition.reduced_formula:<16} {family:<10} "
              f"{len(geoms):>5} {in_plane:8.3f} {apical_text}")  # fmt: skip

    for name, (in_plane, apical) in EXPECTED.items():
        got_in_plane, got_apical, _, _ = summaries[name]
        assert got_in_plane == pytest.approx(in_plane, abs=0.03), name
        assert got_apical == pytest.approx(apical, abs=0.03), name

    # Y123: only the two plane Cu, not the chain Cu; Tl2223: inner plane has no apical O.
    assert len(summaries["mp-20674.cif"][2]) == 2
    tl2223 = summaries["Ba2Ca2Cu3Tl2O10-MP-mp-653154.cif"][2]
    assert sorted(len(g.apical_bonds) for g in tl2223) == [0, 1, 1]
    for in_plane, apical, geoms, _ in summaries.values():
        assert 1.85 < in_plane < 2.0
        assert apical is not None and 2.2 < apical < 3.1
