"""The 3DSC Materials Project rows as Wren can read them: one protostructure label per row, from its MP parent.

3DSC's CIFs are the MP structure with SuperCon's doping written in as partial occupancies, and a partially occupied
structure has no Wyckoff representation. Each row therefore gets the label of its Materials Project parent: every
site given its majority element, labelled once per mp-id (moyopy, symprec 0.1 A) and cached as JSON. Shared by the
Wren speed and accuracy benchmarks.
"""

from __future__ import annotations

import csv
import json
import tarfile
import time
import warnings
from pathlib import Path

SUPERCON = Path(__file__).resolve().parents[2] / "shared" / "data" / "supercon"
TABLE = SUPERCON / "3dsc_mp_lattice_tc_derived.csv"
ARCHIVE = SUPERCON / "3dsc_mp_cifs.tar.xz"
DEFAULT_CACHE = Path("/tmp/matlake_3dsc_parent_labels.json")


def available() -> bool:
    return TABLE.exists() and ARCHIVE.exists()


def rows() -> list[dict[str, str]]:
    """The 10,904 rows of the 3DSC MP table (formula_sc, mp_id, tc_from_3dsc_icsd, ...)."""
    with TABLE.open(newline="") as fh:
        return list(csv.DictReader(fh))


def parent_labels(cache: Path = DEFAULT_CACHE) -> dict[str, str | None]:
    """mp-id -> protostructure label of the MP parent (None when it has no valid representation)."""
    if cache.exists():
        return json.loads(cache.read_text())
    by_mp = _label_parents(ARCHIVE, {r["file"]: r["mp_id"] for r in rows()})
    cache.write_text(json.dumps(by_mp))
    return by_mp


def _label_parents(archive: Path, mp_of_file: dict[str, str]) -> dict[str, str | None]:
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifParser

    from matlake.featurestore.protostructure import protostructure_row

    started = time.perf_counter()
    labels: dict[str, str | None] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            name = Path(member.name).name
            mp_id = mp_of_file.get(name)
            if not member.isfile() or mp_id is None or mp_id in labels:
                continue
            text = tar.extractfile(member).read().decode()  # read in memory, nothing is extracted to disk
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = CifParser.from_str(text).parse_structures(primitive=False)[0]
            parent = Structure(structure.lattice, [max(site.species.items(), key=lambda kv: kv[1])[0].symbol
                                                   for site in structure], structure.frac_coords)
            row = protostructure_row(parent)
            labels[mp_id] = row["protostructure"] if row["is_valid"] else None
    print(f"labelled {len(labels)} MP parent structures in {time.perf_counter() - started:.1f} s "
          f"({sum(v is None for v in labels.values())} without a valid label)")
    return labels
