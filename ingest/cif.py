"""CIF input shared by the SuperCon (3DSC/MP) and ICSD ingesters: safe reading, block splitting, parsing, metadata.

Why each piece exists:

- **Reading** (:func:`iter_cif_texts`): a path is a ``.cif`` file (optionally gzip/xz/bz2-compressed) or a tar archive
  (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.xz``, ``.tar.bz2``) of them. Archive members are read in memory with
  ``extractfile``; nothing is ever extracted to disk. Members that the ``tarfile`` "data" extraction filter would
  refuse, and every link, device or FIFO (the filter lets links inside the destination through; we want none), become
  :class:`CifProblem` items, so they are rejected with a reason instead of silently skipped. Other members whose name
  does not end in ``.cif`` are ignored (read-me files, folders).
- **Blocks** (:func:`split_blocks`): a CIF may hold many ``data_`` blocks (ICSD exports often concatenate
  structures); each block is one record.
- **Parsing** (:func:`parse_block`): pymatgen's ``CifParser`` builds the structure: it reads numbers with standard
  uncertainties (``0.3570(6)``), merges partially occupied atoms on one position into one disordered site, and takes
  oxidation states from ``_atom_type_oxidation_number``. It ignores the charge written in a type symbol (``Cu2+``)
  when that loop is absent, so we then decorate by element when every element has a single charge. Our own light
  tokenizer (:func:`read_cif`) supplies the metadata pymatgen does not keep (:func:`cif_metadata`).
- **Parallel parsing**: :func:`parse_text` is the picklable per-item function; :func:`parse_items` runs it on a Dask
  client (see :mod:`matlake.ingest.parallel`) when one is set with :func:`use_dask`, and otherwise defers the work to
  ``normalise`` via :func:`resolve`, so both paths produce identical records.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import re
import tarfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from .files import open_binary
from .records import RecordRejected, StructureData

MAX_CIF_BYTES = 16 * 1024 * 1024
"""Larger files are rejected (``cif_too_large``): no crystal structure needs more, a decompression bomb does."""
OCCUPANCY_TOLERANCE = 1.05
"""Site occupancies summing to at most this are scaled to 1 (refined occupancies of 1.02 are common); more is an
``invalid_occupancy`` reject."""
EXCERPT_CHARS = 2000
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
CIF_SUFFIXES = (".cif", ".cif.gz", ".cif.xz", ".cif.bz2")

# ---- items passed from reading to parsing (all picklable, so they can travel to Dask workers) -------------------


@dataclass(frozen=True, slots=True)
class CifText:
    """The text of one CIF file; ``name`` is the file path or the archive member name."""

    name: str
    text: str

    @property
    def stem(self) -> str:
        return cif_stem(self.name)


@dataclass(frozen=True, slots=True)
class CifProblem:
    """A file, member or block that cannot become a structure, with the reason code it is rejected under."""

    name: str
    reason_code: str
    message: str
    excerpt: str | None = None
    block_index: int = 0
    n_blocks: int = 1
    block_name: str = ""

    @property
    def stem(self) -> str:
        return cif_stem(self.name)


@dataclass(frozen=True, slots=True)
class CifBlock:
    """One ``data_`` block of a CIF file, not parsed yet."""

    name: str
    block_name: str
    block_index: int
    n_blocks: int
    text: str

    @property
    def stem(self) -> str:
        return cif_stem(self.name)


@dataclass(slots=True)
class ParsedCif:
    """One parsed block: its structure (plain types) and the metadata read from its tags."""

    name: str
    block_name: str
    block_index: int
    n_blocks: int
    structure: StructureData
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return cif_stem(self.name)


CifItem = CifText | CifProblem
CifPayload = CifBlock | ParsedCif | CifProblem


def cif_stem(name: str) -> str:
    """File name without folders and CIF/compression suffixes: the natural key of a CIF file."""
    base = PurePosixPath(name.replace("\\", "/")).name
    lower = base.lower()
    for suffix in CIF_SUFFIXES:
        if lower.endswith(suffix):
            return base[: -len(suffix)]
    return base


def block_key(payload: CifBlock | ParsedCif | CifProblem) -> str:
    """Natural key of a block: the file stem, plus ``#<block name>`` when the file holds several blocks."""
    if payload.n_blocks == 1:
        return payload.stem
    return f"{payload.stem}#{payload.block_name or payload.block_index + 1}"


def is_archive(path: Path) -> bool:
    """Tar archives by name; anything else named ``*.cif[.gz|.xz|.bz2]`` is a CIF file."""
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        return True
    if name.endswith(CIF_SUFFIXES):
        return False
    return tarfile.is_tarfile(path)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders replaced by their CIF files and archives (sorted): the framework takes files only."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(
                CIF_SUFFIXES + ARCHIVE_SUFFIXES)))
        else:
            out.append(p)
    return out


# ---- reading files and archives ----------------------------------------------------------------------------------


def iter_cif_texts(path: Path, max_bytes: int | None = None) -> Iterator[CifItem]:
    """Every CIF text in ``path`` (a CIF file or a tar archive of them), or a problem per unreadable member.

    A truncated or corrupt archive raises ``OSError`` or ``EOFError``: the framework then records an
    ``unreadable_file`` reject and keeps what was read before. ``max_bytes`` defaults to :data:`MAX_CIF_BYTES`.
    """
    max_bytes = MAX_CIF_BYTES if max_bytes is None else max_bytes
    if is_archive(path):
        yield from _iter_archive(path, max_bytes)
        return
    with open_binary(path) as fh:
        data = fh.read(max_bytes + 1)
    yield _decode(str(path), data, max_bytes)


def _iter_archive(path: Path, max_bytes: int) -> Iterator[CifItem]:
    try:
        yield from _iter_members(path, max_bytes)
    except tarfile.TarError as exc:  # not an OSError: say so in terms the framework records as unreadable_file
        raise OSError(f"{path.name}: corrupt or truncated tar archive ({exc})") from exc


def _iter_members(path: Path, max_bytes: int) -> Iterator[CifItem]:
    with open_binary(path) as raw, tarfile.open(fileobj=raw, mode="r|") as archive:
        for member in archive:
            if member.isdir():
                continue
            problem = unsafe_member_reason(member)
            if problem is not None:
                yield CifProblem(member.name, "unsafe_archive_member", f"{path.name}: member {member.name!r} {problem}")
                continue
            if not member.name.lower().endswith(CIF_SUFFIXES):
                continue
            if member.size > max_bytes:
                yield CifProblem(member.name, "cif_too_large",
                                 f"{path.name}: member {member.name!r} has {member.size} bytes (> {max_bytes})")
                continue
            handle = archive.extractfile(member)
            if handle is None:  # cannot happen for regular files; kept so a surprise is a reject, not a crash
                yield CifProblem(member.name, "unsafe_archive_member", f"{path.name}: {member.name!r} has no data")
                continue
            try:
                data = _decompress_member(member.name, handle.read(max_bytes + 1), max_bytes)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:  # LZMAError is none of the others
                yield CifProblem(member.name, "corrupt_archive_member",
                                 f"{path.name}: member {member.name!r} does not decompress ({exc})")
                continue
            yield _decode(member.name, data, max_bytes)


def unsafe_member_reason(member: tarfile.TarInfo) -> str | None:
    """Why a tar member must not be read (links, devices, absolute or ``..`` paths, what the data filter refuses)."""
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        return f"is a {kind} to {member.linkname!r}; links are not followed"
    if not member.isfile():
        return "is a device, FIFO or other special file"
    name = member.name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' path component"
    try:
        tarfile.data_filter(member, "/nonexistent-extraction-root")
    except tarfile.FilterError as exc:
        return f"is refused by the tar 'data' filter: {exc}"
    return None


def _decompress_member(name: str, data: bytes, max_bytes: int) -> bytes:
    """A compressed member (``x.cif.gz``) inflated to at most ``max_bytes + 1`` bytes, so a bomb stays small."""
    lower = name.lower()
    if lower.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=io.BytesIO(data))
    elif lower.endswith(".xz"):
        stream = lzma.LZMAFile(io.BytesIO(data))
    elif lower.endswith(".bz2"):
        stream = bz2.BZ2File(io.BytesIO(data))
    else:
        return data
    with stream:
        return stream.read(max_bytes + 1)


def _decode(name: str, data: bytes, max_bytes: int) -> CifItem:
    if len(data) > max_bytes:
        return CifProblem(name, "cif_too_large", f"{name}: more than {max_bytes} bytes")
    try:
        return CifText(name, data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return CifProblem(name, "undecodable_text", f"{name}: not UTF-8 text ({exc})", data[:EXCERPT_CHARS].decode(
            "utf-8", errors="replace"))


# ---- blocks ------------------------------------------------------------------------------------------------------

_DATA_LINE = re.compile(r"^\s*data_(\S*)", re.IGNORECASE)


def split_blocks(item: CifItem) -> list[CifBlock | CifProblem]:
    """The ``data_`` blocks of one CIF text (semicolon text fields respected); a problem when there are none."""
    if isinstance(item, CifProblem):
        return [item]
    starts: list[tuple[int, str]] = []
    lines = item.text.splitlines()
    in_text_field = False
    for i, line in enumerate(lines):
        if line.startswith(";"):
            in_text_field = not in_text_field
            continue
        if not in_text_field and (m := _DATA_LINE.match(line)):
            starts.append((i, m.group(1)))
    if not starts:
        return [CifProblem(item.name, "malformed_cif", f"{item.name}: no data_ block", item.text[:EXCERPT_CHARS])]
    bounds = [s for s, _ in starts] + [len(lines)]
    n = len(starts)
    return [
        CifBlock(item.name, block_name, k, n, "\n".join(lines[bounds[k]:bounds[k + 1]]) + "\n")
        for k, (_, block_name) in enumerate(starts)
    ]


# ---- parsing -----------------------------------------------------------------------------------------------------


def parse_block(block: CifBlock | CifProblem, kind: str) -> ParsedCif | CifProblem:
    """Structure and metadata of one block; every failure comes back as a :class:`CifProblem`, never raised."""
    if isinstance(block, CifProblem):
        return block
    from .structures import structure_data

    where = block.name if block.n_blocks == 1 else f"{block.name} (block data_{block.block_name})"

    def problem(code: str, message: str) -> CifProblem:
        return CifProblem(block.name, code, f"{where}: {message}", block.text[:EXCERPT_CHARS], block.block_index,
                          block.n_blocks, block.block_name)

    try:
        data = read_cif(block.text)
    except CifSyntaxError as exc:
        return problem("malformed_cif", str(exc))
    if len(data) != 1:
        return problem("malformed_cif", f"expected one data block, found {len(data)}")
    missing = [what for what, tags in _REQUIRED.items() if not any(data[0].column(t) for t in tags)]
    if missing:
        return problem("no_structure", f"no {' and no '.join(missing)}: not a crystal structure")
    metadata = cif_metadata(data[0])
    try:
        structure, parser_warnings = _pymatgen_structure(block.text)
    except ValueError as exc:
        text = " ".join(str(exc).split())
        code = "invalid_occupancy" if "ccupanc" in text else "malformed_cif"
        return problem(code, text[:500])
    except Exception as exc:  # pymatgen raises assorted errors (IndexError, KeyError...) on broken CIFs
        return problem("malformed_cif", f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}")
    _decorate_oxidation_states(structure, metadata)
    if parser_warnings:
        metadata["parser_warnings"] = parser_warnings
    try:
        st = structure_data(structure, kind, spacegroup_number=metadata.get("spacegroup_number"), extra=metadata)
    except RecordRejected as exc:
        return problem(exc.reason_code, exc.message)
    return ParsedCif(block.name, block.block_name, block.block_index, block.n_blocks, st, metadata)


_REQUIRED = {
    "cell": ("_cell_length_a",),
    "atom sites": ("_atom_site_fract_x", "_atom_site_cartn_x"),
}


def parse_text(item: CifItem, kind: str) -> list[ParsedCif | CifProblem]:
    """All blocks of one CIF text, parsed: the per-item function the Dask workers run."""
    return [parse_block(block, kind) for block in split_blocks(item)]


def _pymatgen_structure(text: str):
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parser = CifParser.from_str(text, occupancy_tolerance=OCCUPANCY_TOLERANCE)
        structures = parser.parse_structures(primitive=False, on_error="raise")
    texts = list(parser.warnings) + [str(w.message) for w in caught
                                     if not str(w.message).startswith("Issues encountered while parsing CIF")]
    return structures[0], sorted({" ".join(t.split())[:300] for t in texts})


_CHARGED_SYMBOL = re.compile(r"^([A-Z][a-z]?)(\d*(?:\.\d+)?)([+-])$")


def _decorate_oxidation_states(structure, metadata: dict[str, Any]) -> None:
    """Use type-symbol charges (``Cu2+``) when pymatgen found no ``_atom_type_oxidation_number`` loop."""
    charges = metadata.get("type_symbol_charges")
    if not charges or any(getattr(sp, "oxi_state", None) is not None for sp in structure.composition):
        return
    by_element: dict[str, set[float]] = {}
    for symbol, charge in charges.items():
        by_element.setdefault(_CHARGED_SYMBOL.match(symbol)[1], set()).add(charge)
    elements = {el.symbol for el in structure.composition.elements}
    if not elements <= set(by_element) or any(len(v) != 1 for v in by_element.values()):
        return  # mixed valence on separate sites: keep the charges as metadata only
    structure.add_oxidation_state_by_element({el: next(iter(v)) for el, v in by_element.items()})


# ---- a light CIF 1.1 tokenizer for metadata ----------------------------------------------------------------------


class CifSyntaxError(ValueError):
    """Text that is not CIF: unterminated text field, a tag without a value, a loop with a ragged table."""


@dataclass(slots=True)
class CifData:
    """One data block: tags (lower case) -> value, loop tags -> list of values (``?`` and ``.`` become None)."""

    name: str
    items: dict[str, str | None | list[str | None]] = field(default_factory=dict)

    def scalar(self, *tags: str) -> str | None:
        """The first of ``tags`` with a value; a loop column gives its first value."""
        for tag in tags:
            value = self.items.get(tag)
            if isinstance(value, list):
                value = next((v for v in value if v is not None), None)
            if value is not None and value.strip():
                return value.strip()
        return None

    def column(self, tag: str) -> list[str | None]:
        value = self.items.get(tag)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]


_TOKEN = re.compile(r"""'(.*?)'(?=\s|$)|"(.*?)"(?=\s|$)|(#.*)|(\S+)""")
_RESERVED = ("data_", "loop_", "save_", "global_", "stop_")


def _tokens(text: str) -> Iterator[tuple[str, bool]]:
    """(token, is_value_literal): quoted strings and text fields are literals, never tags or keywords."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(";"):
            start = i
            parts = [line[1:]]
            i += 1
            while i < len(lines) and not lines[i].startswith(";"):
                parts.append(lines[i])
                i += 1
            if i == len(lines):
                raise CifSyntaxError(f"text field opened on line {start + 1} is never closed")
            yield "\n".join(parts).strip(), True
            line = lines[i][1:]
        for m in _TOKEN.finditer(line):
            if m.group(3) is not None:
                break
            if m.group(4) is not None:
                yield m.group(4), False
            else:
                yield (m.group(1) if m.group(1) is not None else m.group(2)), True
        i += 1


def _value(token: str, literal: bool) -> str | None:
    return None if not literal and token in ("?", ".") else token


def read_cif(text: str) -> list[CifData]:
    """All data blocks of a CIF text as tag -> value maps (loops as columns)."""
    blocks: list[CifData] = []
    tokens = list(_tokens(text))
    i = 0
    while i < len(tokens):
        token, literal = tokens[i]
        lower = token.lower()
        if not literal and lower.startswith("data_"):
            blocks.append(CifData(token[5:]))
            i += 1
            continue
        if not blocks:
            raise CifSyntaxError(f"{token[:40]!r} before the first data_ block")
        block = blocks[-1]
        if not literal and lower == "loop_":
            i = _read_loop(tokens, i + 1, block)
            continue
        if not literal and lower.startswith("_"):
            if i + 1 >= len(tokens) or _is_keyword(*tokens[i + 1]):
                raise CifSyntaxError(f"tag {token} has no value")
            block.items[lower] = _value(*tokens[i + 1])
            i += 2
            continue
        if not literal and lower.startswith(("save_", "global_", "stop_")):
            i += 1  # save frames hold dictionary definitions, not data we read
            continue
        raise CifSyntaxError(f"value {token[:40]!r} without a tag")
    return blocks


def _is_keyword(token: str, literal: bool) -> bool:
    return not literal and (token.startswith("_") or token.lower().startswith(_RESERVED))


def _read_loop(tokens: list[tuple[str, bool]], i: int, block: CifData) -> int:
    tags: list[str] = []
    while i < len(tokens) and not tokens[i][1] and tokens[i][0].startswith("_"):
        tags.append(tokens[i][0].lower())
        i += 1
    if not tags:
        raise CifSyntaxError("loop_ without tags")
    values: list[str | None] = []
    while i < len(tokens) and not _is_keyword(*tokens[i]):
        values.append(_value(*tokens[i]))
        i += 1
    if len(values) % len(tags):
        raise CifSyntaxError(f"loop of {', '.join(tags[:3])}...: {len(values)} values for {len(tags)} columns")
    for k, tag in enumerate(tags):
        block.items[tag] = values[k::len(tags)]
    return i


# ---- numbers with standard uncertainties -------------------------------------------------------------------------

_NUMBER = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?(?:\((\d+)\))?")


def parse_number(text: str | None) -> tuple[float, float | None] | None:
    """``'0.3570(6)'`` -> ``(0.357, 0.0006)``; ``'90.'`` -> ``(90.0, None)``; not a number -> None."""
    if text is None:
        return None
    m = _NUMBER.fullmatch(text.strip())
    if m is None or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exponent, su = m.groups()
    power = int(exponent or 0)
    value = float(f"{sign}{whole or '0'}.{frac or '0'}e{power}")
    uncertainty = float(f"{su}e{power - len(frac or '')}") if su else None
    return value, uncertainty


def number(text: str | None) -> float | None:
    parsed = parse_number(text)
    return None if parsed is None or not math.isfinite(parsed[0]) else parsed[0]


# ---- metadata ----------------------------------------------------------------------------------------------------

_CELL_TAGS = {"a": "_cell_length_a", "b": "_cell_length_b", "c": "_cell_length_c", "alpha": "_cell_angle_alpha",
              "beta": "_cell_angle_beta", "gamma": "_cell_angle_gamma"}
_NAME_TAGS = {"chemical_name_systematic": "_chemical_name_systematic", "chemical_name_common": "_chemical_name_common",
              "chemical_name_mineral": "_chemical_name_mineral", "structure_type": "_chemical_name_structure_type",
              "chemical_formula_sum": "_chemical_formula_sum",
              "chemical_formula_structural": "_chemical_formula_structural",
              "title": "_publ_section_title", "audit_creation_date": "_audit_creation_date"}
_R_FACTOR = re.compile(r"^_(?:refine_ls_w?r_\w*|pd_proc_ls_prof_w?r_\w*|refine_ls_goodness_of_fit_\w*)$")
_JOURNAL_TAGS = ("_journal_name_full", "_journal_year", "_journal_volume", "_journal_page_first",
                 "_journal_page_last", "_journal_coden_astm", "_journal_paper_doi")


def cif_metadata(data: CifData) -> dict[str, Any]:
    """What the ICSD (and CIF core) tags say beyond the structure; only tags present in the block appear."""
    meta: dict[str, Any] = {"cif_block": data.name}
    code = data.scalar("_database_code_icsd")
    if code is not None:
        meta["icsd_code"] = int(code) if code.isdigit() else code
    for key, tag in _NAME_TAGS.items():
        if (value := data.scalar(tag)) is not None:
            meta[key] = " ".join(value.split())
    hm = data.scalar("_symmetry_space_group_name_h-m", "_space_group_name_h-m_alt")
    if hm is not None:
        meta["spacegroup_hm"] = hm
    sg = number(data.scalar("_symmetry_int_tables_number", "_space_group_it_number"))
    if sg is not None and sg.is_integer() and 1 <= sg <= 230:
        meta["spacegroup_number"] = int(sg)
    cell_su = {}
    for key, tag in _CELL_TAGS.items():
        parsed = parse_number(data.scalar(tag))
        if parsed is not None and parsed[1] is not None:
            cell_su[key] = parsed[1]
    if cell_su:
        meta["cell_su"] = cell_su
    for key, tags in (("z", ("_cell_formula_units_z",)), ("density_g_cm3", ("_exptl_crystal_density_diffrn",)),
                      ("measurement_temperature_k", ("_cell_measurement_temperature",)),
                      ("ambient_temperature_k", ("_diffrn_ambient_temperature",)),
                      ("measurement_pressure_kpa", ("_cell_measurement_pressure", "_diffrn_ambient_pressure"))):
        if (value := number(data.scalar(*tags))) is not None:
            meta[key] = int(value) if key == "z" and value.is_integer() else value
    r_factors = {tag[1:]: v for tag in sorted(data.items) if _R_FACTOR.match(tag)
                 and (v := number(data.scalar(tag))) is not None}
    if r_factors:
        meta["r_factors"] = r_factors
    method, evidence = diffraction_method(data)
    meta["diffraction_method"] = method
    if evidence:
        meta["diffraction_method_evidence"] = evidence
    citations = _citations(data)
    if citations:
        meta["citations"] = citations
    authors = [a for a in data.column("_publ_author_name") if a]
    if authors:
        meta["authors"] = authors
    oxidation = {}
    for symbol, value in zip(data.column("_atom_type_symbol"), data.column("_atom_type_oxidation_number")):
        if symbol and (v := number(value)) is not None:
            oxidation[symbol] = v
    if oxidation:
        meta["oxidation_numbers"] = oxidation
    charges = {}
    for symbol in data.column("_atom_site_type_symbol"):
        if symbol and (m := _CHARGED_SYMBOL.match(symbol)):
            charges[symbol] = (float(m[2]) if m[2] else 1.0) * (1 if m[3] == "+" else -1)
    if charges:
        meta["type_symbol_charges"] = charges
    return meta


def _citations(data: CifData) -> list[dict[str, Any]]:
    tags = sorted(t for t in data.items if t.startswith("_citation_"))
    rows: list[dict[str, Any]] = []
    if tags:
        n = max(len(data.column(t)) for t in tags)
        for k in range(n):
            row: dict[str, Any] = {t[len("_citation_"):]: col[k] for t in tags
                                   if k < len(col := data.column(t)) and col[k]}
            if str(row.get("year", "")).isdigit():
                row["year"] = int(row["year"])
            if row:
                rows.append(row)
    journal = {t[len("_journal_"):]: v for t in _JOURNAL_TAGS if (v := data.scalar(t)) is not None}
    if journal:
        rows.append(journal)
    return rows


_NEUTRON = re.compile(r"neutron", re.IGNORECASE)
_XRAY = re.compile(r"x[\s-]?rays?\b|synchrotron|r[öo]ntgen|sealed[\s-]tube|rotating[\s-]anode", re.IGNORECASE)
_XRAY_LINE = re.compile(r"\b(?:Cu|Mo|Ag|Co|Fe|Cr)\s*K(?:\\?a|α|-?alpha|\\?b|β)?\s*\d?(?=\W|$)")
_ELECTRON = re.compile(r"electron", re.IGNORECASE)
_EXPLICIT_TAGS = ("_diffrn_radiation_probe", "_diffrn_radiation_type", "_diffrn_source", "_diffrn_radiation_source",
                  "_diffrn_source_type")
_REMARK_TAGS = ("_publ_section_comment", "_refine_special_details", "_exptl_special_details",
                "_diffrn_special_details", "_pd_proc_info_special_details", "_publ_section_title")


def diffraction_method(data: CifData) -> tuple[str, str | None]:
    """``('neutron' | 'x-ray' | 'electron' | 'unknown', evidence)`` from the radiation tags, then free-text remarks.

    Radiation tags win over remarks; a remark naming both neutrons and X-rays (combined refinements, comparisons)
    decides nothing, and neither does a block that says nothing: those are 'unknown'.
    """
    for tag in _EXPLICIT_TAGS:
        value = data.scalar(tag)
        if not value:
            continue
        found = _methods_in(value, electron=True)
        if len(found) == 1:
            return found[0], f"{tag[1:]}: {value[:120]}"
        if reactor := re.search(r"reactor|spallation", value, re.IGNORECASE):
            return "neutron", f"{tag[1:]}: {reactor.group(0)}"
    remark_tags = [t for t in data.items if t.startswith("_chemical_name_")] + list(_REMARK_TAGS)
    seen: dict[str, str] = {}
    for tag in remark_tags:
        value = data.scalar(tag)
        if value:
            for method in _methods_in(value, electron=False):
                seen.setdefault(method, f"{tag[1:]}: {' '.join(value.split())[:120]}")
    if len(seen) == 1:
        return next(iter(seen.items()))
    if len(seen) > 1:
        return "unknown", "remarks name both neutron and X-ray diffraction"
    return "unknown", None


def _methods_in(text: str, *, electron: bool) -> list[str]:
    found = []
    if _NEUTRON.search(text):
        found.append("neutron")
    if _XRAY.search(text) or _XRAY_LINE.search(text):
        found.append("x-ray")
    if electron and not found and _ELECTRON.search(text):
        found.append("electron")
    return found


# ---- the switch between in-process and Dask parsing --------------------------------------------------------------


@dataclass(slots=True)
class _DaskSetting:
    client: Any
    chunk_size: int


_dask: _DaskSetting | None = None


def set_dask_client(client: Any | None, chunk_size: int = 100) -> None:
    """Parse CIFs on this ``distributed.Client`` from now on (None: in the reading process again)."""
    global _dask
    _dask = None if client is None else _DaskSetting(client, chunk_size)


@contextmanager
def use_dask(client: Any, chunk_size: int = 100) -> Iterator[None]:
    """Within the block, the CIF readers parse on ``client``'s workers; the framework still writes alone."""
    previous = _dask
    set_dask_client(client, chunk_size)
    try:
        yield
    finally:
        globals()["_dask"] = previous


def parse_items(items: Iterable[CifItem], kind: str) -> Iterator[CifPayload]:
    """Blocks for ``normalise`` to parse, or, with a Dask client set, blocks already parsed on its workers."""
    if _dask is None:
        for item in items:
            yield from split_blocks(item)
        return
    from .parallel import map_chunks

    for parsed in map_chunks(_dask.client, partial(parse_text, kind=kind), items, chunk_size=_dask.chunk_size):
        yield from parsed


def resolve(payload: CifPayload, kind: str) -> ParsedCif:
    """The parsed block behind a payload; a problem becomes ``RecordRejected`` naming the file and reason."""
    parsed = parse_block(payload, kind) if isinstance(payload, CifBlock) else payload
    if isinstance(parsed, CifProblem):
        raise RecordRejected(parsed.reason_code, parsed.message, parsed.stem)
    return parsed


def excerpt(payload: CifPayload) -> str:
    """Text stored with a reject: the block (or what is known of it)."""
    if isinstance(payload, CifBlock):
        return payload.text[:EXCERPT_CHARS]
    if isinstance(payload, CifProblem):
        return payload.excerpt or payload.message
    return f"{payload.name} data_{payload.block_name}"
