"""Downloads for the ingesters: a registry of published files per source release, fetched and verified with pooch.

Every registered file has a URL, a checksum (sha256; the publisher's md5 where only that is published) and, where
known, its size. :func:`fetch_release` downloads a release into the cache (``<cache>/<source>/<release>/<name>``),
retries broken transfers, refuses a file whose size or checksum differs (nothing unverified is left in the cache)
and answers later calls from the cache without a request.

- Mirrors, for machines behind a firewall: ``mirror=`` or ``MATLAKE_MIRROR``, a base URL or a folder laid out like
  the cache (``<mirror>/<source>/<release>/<name>``; a folder may also hold ``<source>/<name>`` or the files flat).
  There is no fallback to the original host, and the checksums still apply.
- More releases, or your own sources: a TOML file named by ``MATLAKE_REGISTRY`` (see :func:`load_registry`).
- API keys: a release may name an environment variable (``MP_API_KEY``) whose value is sent as a header to the
  registered host only: never to a mirror, never across a redirect to another host, never logged or stored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pooch
import requests
from requests.auth import AuthBase

from matlake.config import get_settings
from matlake.errors import ConfigError, InputError

log = logging.getLogger(__name__)

MIRROR_ENV = "MATLAKE_MIRROR"
REGISTRY_ENV = "MATLAKE_REGISTRY"
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}


class DownloadError(InputError):
    """A registered file cannot be fetched or fails verification; the message names the file and what differed."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One published file: where it lives and what its bytes must hash to."""

    name: str
    url: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    description: str = ""

    @property
    def algorithm(self) -> str:
        return "sha256" if self.sha256 else "md5"

    @property
    def expected_hash(self) -> str:
        return self.sha256 or self.md5 or ""

    @property
    def known_hash(self) -> str:
        """The checksum in pooch's ``algorithm:hex`` form."""
        return f"{self.algorithm}:{self.expected_hash}"


@dataclass(frozen=True, slots=True)
class Release:
    """A named, immutable set of files of one source (the tag becomes the ingested release's tag)."""

    source: str
    tag: str
    files: tuple[RemoteFile, ...]
    description: str = ""
    licence: str = ""
    default: bool = False
    api_key_env: str | None = None
    api_key_header: str = "X-API-KEY"


@dataclass
class Registry:
    """Releases by source and tag."""

    releases: dict[str, dict[str, Release]] = field(default_factory=dict)

    def add(self, release: Release) -> None:
        _validate(release)
        self.releases.setdefault(release.source, {})[release.tag] = release

    def merged(self, other: Registry) -> Registry:
        """This registry with ``other``'s releases added (same source and tag: ``other`` wins)."""
        out = Registry({s: dict(r) for s, r in self.releases.items()})
        for by_tag in other.releases.values():
            for release in by_tag.values():
                out.add(release)
        return out

    def get(self, source: str, tag: str | None = None) -> Release:
        """The release ``tag`` of ``source``, or its default release; unknown names list the known ones."""
        by_tag = self.releases.get(source)
        if not by_tag:
            known = ", ".join(sorted(self.releases)) or "none"
            raise InputError(f"no downloadable releases are registered for source {source!r} "
                             f"(sources with downloads: {known})")
        if tag is None:
            defaults = [r for r in by_tag.values() if r.default]
            return defaults[-1] if defaults else next(iter(by_tag.values()))
        try:
            return by_tag[tag]
        except KeyError:
            raise InputError(f"unknown release {tag!r} of source {source!r}: registered releases are "
                             f"{', '.join(by_tag)}") from None


# ---- the built-in registry --------------------------------------------------------------------------------------


def _github(repo: str, commit: str, path: str) -> str:
    """A raw URL pinned to a commit, so the bytes (and the checksum) cannot change under the same address."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def _figshare(file_id: int) -> str:
    """A figshare file: ids are immutable (a new upload gets a new id)."""
    return f"https://figshare.com/ndownloader/files/{file_id}"


_AVIARY = "CompRhys/aviary"
_CRABNET, _CRABNET_AT = "anthony-wang/CrabNet", "457b4d4835737ecbe4dd33e53174bd818bd82143"
_EMMET, _EMMET_AT = "materialsproject/emmet", "fbe8656b65647e69f30b09090da4135e95d8b2f7"
_MBD = "janosh/matbench-discovery"
_QMPY, _QMPY_AT = "wolverton-research-group/qmpy", "dede5bdf4aa3ea1187a7bc273e86336c24aadb25"
_3DSC_AT = "8d69ca9c94b83d387378549225d3b7c3af85ca42"
_MP_LICENCE = "CC-BY-4.0 (Materials Project data)"

# The TAATA subset in aviary's examples: one POSCAR per material, named by its hash ("name sha256 bytes").
_TAATA_POSCARS = (
    "00021364446a637881257fd9ee912a422a6b1753 19e2caaf7634ad2f1ea64000f6539bb9aa2fd40d9420302963cf1e469c154459 2285",
    "000866a75fbc0a305808c11c58342bb973c3cad5 96b510bb8139c7e2a2d99a10e821201a8e70733418e3ac90f5bd2df5067f9a18 1528",
    "000fe0f2a4730347df688bd0d3c75f4494a28dca 372f7d414be39d0e1dc4a10c99b022bd245a4766547d949cc6ed233cf35a109f 764",
    "0019407b910a29730999dab65491b4e50624c219 5da784cf3364757a70bd161eafb1b226b3119aa5575aebaf4af3a94d822a79ee 1606",
    "001a938f944fa33e899b81e3d0a909876587e7b0 292bc3174b8f22b56201f87c0f63e50ae797db4acddb650f43077c01a9baf8e3 1522",
    "00237cf70206a5de77e5154ea72633514cdd4445 4c6545682a1f6bbda889d9e50aed80414743f908db9633c0ac645a6b7146d01c 1223",
    "0039f3c461ce4a2cbf4c48b09bfc3c6b13a5c769 c94da43bd6d824409e468f9e6a0dcae51014e7418a68fb06cf9c9d89635e13e8 1522",
    "004c70f544dca7f8e1c74c6c4ff87a1e355e7cd5 c497246e38d01007b6fe1864b9f5ccf9ba56d50f4c571fea081e245a4fc8f104 843",
    "0059fd6dd1d17138c42bb5430fa0bc074053f0de 037fcdefc208f06dc1c9374c3de394e82cb9ed649dbf07bb4ef0a89c9219a468 1154",
    "006047d5cfe39157f2904d2533bad74b2ddd3170 7e3ad1dc3b753d58168cd624df3984af082c2cffe86f8f3ed691920f2f558e12 684",
    "0060794138df3ba93c68007949b0a72d19cb4c62 f9c6fd5df95ab1d907f1c390a7d56d595876a6f8a85cf8e71d7ea9b1a937219c 839",
    "006197ce31efdef23c82f0f6cec08ac0b0febdce 1629a87f93c61fe8daf69005ed3ed2ab15444feb3b8b7547bf17693d8faa12bb 2743",
    "0069751a4ba575438917a8b4e5a565b686388f6e 0d63988e38f8ca749b9a088e556d308aa81f3a63b5cc3a28c16119938dc3cfdd 3202",
    "006a8e78e4bb5c1570bf70b47b24c0b855a5b5b5 862f0d9134eef197800afff72815c359a2f328b66152416d7c899701172625e8 692",
    "0079b9e3ab0e210ea4afe037a9faee8cd6577922 a5f1fa914c066423fd3be3cefddfee4872664d8849c945fbbf2ebaa1d3cb1bd6 1066",
    "009ee0451531276f598976f46848fe7d590262ca 7b8f88672c0fb4908b5540722a82c84e3bf4016f25ada1f57b363bc146579009 1262",
    "00a3259f00f8a9aa503caae2045970d2f7b22e13 c52e238b611c097103eac49001e4606e09fc0b4ad006beb8e7ce32594a94ec83 1661",
    "00a8d0f6f55191596770605314ff347995a3540d b2f21365fb3c8ac5829b238a50e64671d80cc55a122f05299c51d1a825b732c2 1527",
    "00af9b9350147b8c20498eb9cd65b63a3132c741 407ac478629cefbb5738c21b5fcdc912f3c2904a8a33e5ed2d7a14504212bd8c 762",
    "00bada6787af6463447a1460da0c031d51494b60 0717dfb4f5be7a4a8954c5c3553b51e7ef2ec0621b859a99f5ec570cc2e39b10 1963",
    "00bbba1d86168727008d4c1542b39d45d93d693c 2ed8ab1d81f903229bfe9aa9c1870c259a5293146826762a8a513f6aa8136792 1068",
    "00cca7ad273875ba80f1d437af797b6a01cc6ebd 2b0f585df3ff579f6155f95f0f954dc7cbfeeb1580453ed06b203fb0a4d79f43 1759",
    "00ceac1a8da8e554218a84def07e5a6da9f106f3 feea46e6f8bb87e8c3c96b5db5810b8d6d456f796eacc75294750e98582f620b 1071",
    "00ecadb66a8baab030675a817d2ee15f0002a4dc f612af0eb35a0b5da1fe8b0a2d80afe9754c7bbdf0b27b58b427aadfc2bc435e 2214",
    "00fa7d75b7b2e1442df0a68071210c8d64b93ebe a99f0e26e2fe976c078237fd4cbf36b5cee4ee93945e6e75f6c1f887e108c81a 1152",
    "0a0ae9c18de23e72bb764e10ef542de693321542 28b9f8d6cf3782f54d22e69dfda6cd7917efc8917abd5cf90be3ad24f8594ec5 1146",
    "0a10bbf9e7cd3d8da2469f15e06ceca7d8d2af5d 9f63739da0dd56798ae9ed2f93b09c4e3b3912fc3e3097d7f655e7c83d1a0607 3507",
    "0a130b596d1ce7bfe317d9e546bbeacc703fef65 c67e14894caf4124d70ed76d51f46e67a769e31e563d4cc3288b024fbf631f3b 1373",
    "0a2c3a235656a97d76f731b269982f92de9b37fd 273f3979f01bbacea771461452265890f001c69b31e0577c5648da2a050d12e3 683",
    "0a2c4708d3c853ea3c4b8630027afe9b788ee2ce 4a813022ce8ba3260559589bc6304d35ea2020a1f690003a464900797c490cd3 1677",
    "0a2e1f340255f62a617974d778714e5fdd28a007 8d0b4c2d7bfb55bb8c8b235ebcf4558e926639b297c1606a620b8be455d9e85c 760",
    "0a3eb2074380f4abdec94d4a6171a099c9ecb30a cdf77e60a38e2bf7eec68e539762dd4f7a000c42c3813437600abd1e71196eeb 1066",
    "0a458b5f2eeebeb0e4e55e1d1a17988ec87b7123 97b0f81c2493fb1651d4f025af2157f8ddac114b8133fce8f84bfb9448920712 1370",
    "0a4a721fb8f0996350edd4fb224d89ce213f7f93 142ee064dd0ff85cf96556716926550b9be3befa1ff2e8792d07df21c912dd7f 1444",
    "0a58ef8a37185d8abcbd6e1bad7eaf7e3d3d6016 128a6ab5f6a9725fbaa7643f8ad6734febd47a3066f0aebf3145dd8cf0930c79 1031",
    "0a5af69c21e6c2d9b004c2f51939790b10b19814 a1e6d039f410461704ce6f19a06a8fd779faadf1786f224998a8ed8ac121436a 1110",
    "0a646e174268b493bd67f58fdf52fead02f74a96 26cd3acb9c0a5b251d54f47ad1cd7f7a15f6cbfce609623ed5a00564738a94d2 1067",
    "0a74297fb11027ba2a958da5ee31980b8876e1d4 9b1f56ab99824cdad926fc20fe82a6cbb000b6c5f6fe6e1cfc25459497d489c6 913",
    "0a946dc02260d0d4b36ef2087e60b415a5fff800 e76e5b70d1a465196c20bdb2db2abd8c6023137a8d90c6993bc982fe36338c39 1824",
    "0ab8cc7e5cc3d48fcc786f9060da5a8882374f44 e1573c496ea0c24e76ec903f1d124f29ec9a754c3e6fba4159e459b56085ba51 1824",
    "0ab8ebf80d94a1ba826857a9e81cea8c7124d86e 7d42ccfbc0d6ed9507cc9c04e2cdc7ad9dfa6fa513c322619fb553e703be39e2 1596",
    "0abac62147275aa8199465764751eaa67c94d16c 0e144866d5ff0a0993df3a569a4d51af4ffec7c87b790e43db33060267e06ea8 1525",
    "0abb6669aa25624d8371765c5afa6b80ae20f30b 0710e402ab988dcba13b0a2805133e29c147f7c41b25b0880ed95711831183d4 686",
    "0ac3201405a380e382377a71216b33cde892b161 5062432a5605b56571894c8c1e4ef71bcede59e43517f740af387a73e3a9ce57 991",
    "0ac7f92ee7225e47dbdc25f6d60a10b116b0813b 00d36721698d7a268b7b8e3e192d1f0ffd3d627a30fbd283c2b90c1baa12cce9 914",
    "0ac8a65af75e8223b07dcd98c6958db7af6504cf 66cf85f058672e416e8f92be588870b00cabfe014c986088f145be330ff63276 1370",
    "0ad3ae37a9fb7eab9189ff1cb384b9d2dd26bbf9 18e1a764300f6a526d023245a1c9afc7d65223f6b488d1a207acbfd9390960cf 3432",
    "0ad7c1ba7ec6a37cae0523bbd1c2a75f2d56a3f2 3cf09a6c41d929fa870cc2559dad248108653df8849ac74ef87c6fee7b28386a 3511",
    "0ad7d4c22ba4414fbe161f27f42c112c6cb83b29 ab0c1370eaf38e7cf1f23e17c5bc0d975f7053bed61ba69f762a6200ea20ad02 923",
    "0ad8980cb8eb0693647f411732b2165b6a0fce0e 44536e57a72e9b96b363f6f8e0d1bb600b43fc0d3c49c83bb505f00887fa19b6 1232",
    "0adeaf7a9c16772b66815cce19917ef0460affe8 0522e4b5161fe374a17278b0576a1a7a7afd94d14fda3eb0fa648c75d75f5e7d 1976",
    "0c0b4fd84c8f4e075436d7ec34bfb3fad5e610be d6d7ec8cdbef1812765324d2d6fa6d15e62900a01d9b017d79458e2b3f5fa10b 1608",
    "0c13902f8200732555ad1603e954a726d4d24d85 9d5f35299f2522c5cb868d801aeb7072136eda2a49924263d06d4aded47a0721 917",
    "0c27147781fc9c64cbcf45acc1575a0bf8070841 478057d92ae638650dde2d0f4ddbb1990ecb5b26dad47ceb0b404426137c5c3c 994",
    "0c2fc1da358bcddfb4baf41b5dfd7285a13b766a 304057ec01b7d32774821d8f94e5a24024e3d4eb16b3f231027aad225fc456af 840",
    "0c429f98b79c9522a11d51fbfae484004f899422 12b0521c7f095275927c7eb8be1b95670871117b7b3f6854fbb9b8867fffacd4 1450",
    "0c450e6f9c256e33ef452c98dd20917fb6484317 8b468105e3af387503ede8ec2275d4cf166a5e2d7fe3b0966c1be875329db23e 1146",
    "0c5264c980964b88ae8a7c2c18d5a61daff481b1 9cb44c120f7843a2188759d360f4a0520c00136ced8be1f4a2937a8a1128841d 998",
    "0c5e41fdc8fba8e90b48cbe4752dc2c4a2805f21 2ad13ff70d4f440ca49ef4a9f0d665d322c4ce3903bfb492d5a4f9cdae7edefc 841",
    "0c5ef0e6b20d6e34ae388d640797f032a15df918 637c964c2bfb7c9a1142cb85dfac309418252fc0d3a908a0f3772832b1afadae 650",
    "0c5ffa8e2b3126eba02901c37b31e8faf3b5377c 01dd8d4e32a0645277e99b31ca49a47d948f830ca2f0cf09ce878550dc4c3f48 1338",
    "0c710ee221d7567cc0f1a06fba8231ae8261a181 37e779a3373b629dc9f4fa02824c713cb089502debcbcc97464f2f9163239ce1 954",
    "0c7147c05a270b9b2744576b0bfb69c8391ee1e4 c6bb03448bed2e4d2b3c634de174de08dc8a9614cb4129d911b009e80422e204 802",
    "0c882a0621189d18ff1350e3bed4114868663acf f4e518c6d5f00463be9baf3f38965390ec55ed3902bba9312793bfd33e500d2c 1225",
    "0c9c74b6f48facd507c4e41d9df797a2017634e7 e9244f9451ed8a9e233d6ab0605d5be8a3d943861857dc877b414f5b5c385d11 918",
    "0c9cbed1e5d755a9666db36f742004c14bf780bd a75508f08b3f0698d1fe919670606a0f96bae7931a89bf3c8ec712e3f8d505e6 1064",
    "0c9cf664171d7e10527033cda1551694141207ed 5b68f6b0f6e6084a9a03cd82745f9daf91beded6b991a8a21baf5983a751108d 608",
    "0cd142efcf69ba63dc62760ecd72fb4f1e930115 8dbf72e5bf081ff1886e4b5bb638f2210f38368d483079268513852b9041c748 838",
    "0cd1f1670176b03cc3d61935d9a6882c9508e33a 6381ce1dfc8c2033375dc940be18d1a36703d4819e042e6e5313b4af75d7b3b4 1220",
    "0fd347fb29c23cad30d42852d7aa4ed906102b8a 42fb61c2f6ebe5b9af23d0de2dfc3db33d311166e6daeb809e2f5887b58cc0af 549",
    "6f7d6a970fde2a4243091aba720fc14ceec2854b 7f43ad4230de26307a592f9dcb864306659dbfec3f69dfb3e753add917b5d9ac 792",
    "b3603cef0816d0e115adeafa4eee65c056dc7a26 61889b933cbbe6dd98524356b97256791e11489f5dada242d6f8469e34346fdc 569",
    "b428ccf0f8cd5488a3af5d72b74e117dc71aa575 6fb939cbc80b646ccc8de289045959c1036a8e07de24488b78a7240deb1e6e12 569",
    "c07b988125b3a0adc329b2449eeaac24c9e7def8 6e47ca2723b2616cf0f56489c66f1791c06c71ddbd4ae30ffecab74503b52186 566",
)


# sha256 and sizes: measured on the same bytes (../shared/data/MANIFEST.tsv; git blob ids checked against each
# repository at the pinned commit). md5 only: figshare's computed_md5 as recorded in matbench-discovery's
# data-files.yml (for file ids 40344463/40344466 see its commit 7dd5326b, which names them).
BUILTIN_RELEASES: tuple[Release, ...] = (
    Release("mp", "aviary-2021", default=True, licence=_MP_LICENCE,
            description="Materials Project sets of the Roost paper (Goodall & Lee 2020) from the aviary repository",
            files=(
                RemoteFile("aviary_mp-formation.csv",
                           _github(_AVIARY, "3b62b6f02c8d5b66df8e59da8871ebde443bd98d",
                                   "data/datasets/mp-formation.csv"),
                           sha256="92ba6fd2a0777261ba78bf72a0244875a78f05a5902993d9440c18255802a644", size=3307303,
                           description="mp-id, composition, formation energy per atom"),
                RemoteFile("aviary_mp-non-metals.csv",
                           _github(_AVIARY, "58cee0c25b80a51bd7cf101a2e44745c6ede85c7",
                                   "data/datasets/mp-non-metals.csv"),
                           sha256="febbb4298a1ec64e24d04a4a495b38f055c3b2de1941369dd06cddd1e63fe48a", size=1433789,
                           description="mp-id, composition, PBE band gap of non-metals"),
                RemoteFile("aviary_cgcnn-example.csv",
                           _github(_AVIARY, "58cee0c25b80a51bd7cf101a2e44745c6ede85c7",
                                   "data/datasets/cgcnn-example.csv"),
                           sha256="dc10a90e3b12ea1bc9b7a10affb9cd21ec96c8ffbfd605691a8ae45ca2608ab4", size=75194,
                           description="mp-id, composition, formation energy, lattice and sites"),
            )),
    Release("mp", "matbench-v0.1", licence=_MP_LICENCE,
            description="matbench MP tasks (formulas only, as copied into CrabNet) and matbench_phonons (structures)",
            files=(
                RemoteFile("crabnet_matbench_mp_e_form.csv",
                           _github(_CRABNET, _CRABNET_AT, "data/matbench/mp_e_form.csv"),
                           sha256="90e895635c96447c5be4e9070d26f26e1b4d17925102a6597ae3c4d79c32555b", size=4022461),
                RemoteFile("crabnet_matbench_mp_gap.csv", _github(_CRABNET, _CRABNET_AT, "data/matbench/mp_gap.csv"),
                           sha256="4084e584467e6f81ec8bf12c438eeb2c049ae39e11401bae694ef6a9983b9d9f", size=2147391),
                RemoteFile("aviary_matbench_phonons.json.gz",
                           _github(_AVIARY, "a021eb723a5128d45df7387ba57ec50a4834afe9",
                                   "tests/data/matbench_phonons.json.gz"),
                           sha256="4db551f21ec5f577e6202725f10e34dfc509aa7df3a6bdaac497da7f6dbbb9b3", size=459672),
            )),
    Release("mp", "emmet-tests", licence=_MP_LICENCE,
            description="MP ComputedStructureEntries and task documents (with relaxation steps) from emmet's tests",
            files=tuple(
                RemoteFile(name, _github(_EMMET, _EMMET_AT, f"test_files/{upstream}"), sha256=sha, size=size)
                for name, upstream, sha, size in (
                    ("emmet_Li-Fe-O_cses.json.gz", "Li-Fe-O.json.gz",
                     "1fe058447f5e6aaae9d093988d8ed5afbab7b70fc0603c1bb548917249d21c1e", 466432),
                    ("emmet_tasks_Li_Fe_V.json.gz", "tasks_Li_Fe_V.json.gz",
                     "4dc43ca677e57640a489ee1aef86947dc03ae23b73b45128c9abfde4ddc642fb", 483916),
                    ("emmet_test_As2SO6_tasks.json.gz", "test_As2SO6_tasks.json.gz",
                     "013746a3718e2bad0f3d543eca4f44c67d279106365035f0e71aaa60f0920434", 281014),
                    ("emmet_test_si_tasks.json.gz", "test_si_tasks.json.gz",
                     "7f21e36fdb34e92d5873501be68285bf54c1d11d7d03120f9dcfda5dcd2f93fa", 19432),
                )
            )),
    Release("mp", "mbd-2023.02.07", licence=_MP_LICENCE,
            description="matbench-discovery's MP snapshot (database v2022.10.28, retrieved 2023-02-07)",
            files=(
                RemoteFile("mbd_2023-02-07-mp-elemental-reference-entries.json.gz",
                           _github(_MBD, "2c7f9fc42d018711dc2f5df573d225ea6d2d17b2",
                                   "data/mp/2023-02-07-mp-elemental-reference-entries.json.gz"),
                           sha256="9fd6ef848a91c88840a0d1709b5856d0edb4af22095237e59db52f2acd6bbf79", size=6350,
                           description="lowest-energy ComputedEntry per element (also figshare file 40387775)"),
                RemoteFile("2023-02-07-mp-computed-structure-entries.json.gz", _figshare(40344436),
                           md5="76fc748db6b175bb80de4c276d27c235",
                           description="all MP ComputedStructureEntries (relaxed structures and energies)"),
            )),
    Release("oqmd", "crabnet-benchmark", default=True, licence="CC-BY-4.0 (OQMD)",
            description="OQMD formation enthalpies (formula, eV/atom), validation and test splits of CrabNet",
            files=tuple(
                RemoteFile(f"crabnet_OQMD_Formation_Enthalpy_{split}.csv",
                           _github(_CRABNET, _CRABNET_AT, f"data/benchmark_data/OQMD_Formation_Enthalpy/{split}.csv"),
                           sha256=sha, size=size)
                for split, sha, size in (
                    ("val", "af138c2bfed3a8eb8fc2e202690fae94190e0e64258625ce1612df45298193d4", 1187043),
                    ("test", "773275807866c98cef1d36887e2f33cf3a3bb0428fc8faf6912cdcff19961172", 1188263),
                )
            )),
    Release("oqmd", "elemnet-aviary", licence="CC-BY-4.0 (OQMD)",
            description="the ElemNet OQMD test split (fractional compositions) from the aviary repository",
            files=(
                RemoteFile("aviary_oqmd_test.csv",
                           _github(_AVIARY, "474bbcdd486b52e7a88bae06fa00b93dd1edf778", "data/datasets/oqmd_test.csv"),
                           sha256="3b1eeae92b896d075780693f557c38c6c7d4960658c57de31620097918545015", size=1262883),
            )),
    Release("oqmd", "qmpy-legacy", licence="CC-BY-4.0 (OQMD)",
            description="older OQMD formation energies shipped with qmpy (whitespace table: composition energy)",
            files=(
                RemoteFile("qmpy_thermodata_legacy.dat", _github(_QMPY, _QMPY_AT, "qmpy/data/thermodata/legacy.dat"),
                           sha256="c2556b37d7f5767df45552738525e8afc1024867d7941e72b2f3eb740574ef85", size=269432),
            )),
    Release("experimental", "aviary-2021", default=True, licence="see Zhuo, Mansouri Tehrani & Brgoch 2018",
            description="experimental band gaps (Zhuo et al. 2018): non-metals (the Roost paper's EX set) and all",
            files=(
                RemoteFile("aviary_expt-non-metals.csv",
                           _github(_AVIARY, "58cee0c25b80a51bd7cf101a2e44745c6ede85c7",
                                   "data/datasets/expt-non-metals.csv"),
                           sha256="0100c8f9e6754ac7c9ce5de6de272e53e184e496e0fceff5dd3065d0d2eb9ed6", size=70126),
                RemoteFile("aviary_expt-bandgaps.csv",
                           _github(_AVIARY, "3b62b6f02c8d5b66df8e59da8871ebde443bd98d",
                                   "data/datasets/expt-bandgaps.csv"),
                           sha256="5533b10ba44cb8bb7e630394a930aec1b47d2f9c2358c06d53b532ba093a51b8", size=113051),
            )),
    Release("experimental", "matbench-v0.1", licence="see Zhuo, Mansouri Tehrani & Brgoch 2018",
            description="matbench_expt_gap as copied into CrabNet",
            files=(
                RemoteFile("crabnet_matbench_expt_gap.csv",
                           _github(_CRABNET, _CRABNET_AT, "data/matbench/expt_gap.csv"),
                           sha256="3de82c37f1db3ab9bbd92366c96633f131913ded5db0969eb36216bdd11cef2f", size=57522),
            )),
    Release("experimental", "qmpy-ssub", licence="SGTE SSUB via qmpy",
            description="experimental formation enthalpies (SGTE SSUB) shipped with qmpy",
            files=(
                RemoteFile("qmpy_thermodata_ssub.dat", _github(_QMPY, _QMPY_AT, "qmpy/data/thermodata/ssub.dat"),
                           sha256="72d98cfe965e1e1972cae8cc483fbe6cb2e4da19150584e86d01b2707ae0533e", size=43269),
            )),
    Release("wbm", "2022.10.28", default=True, licence="CC-BY-4.0 (matbench-discovery)",
            description="WBM as released by matbench-discovery v1 (figshare article 22715158; pairs with MP "
                        "v2022.10.28): summary energies, relaxed ComputedStructureEntries, initial structures",
            files=(
                RemoteFile("2023-12-13-wbm-summary.csv.gz", _figshare(44225498), md5="fb23d85dab61fab001b92cb0ac4f8f3d",
                           description="energies, formation energies, hull distances, no structures"),
                RemoteFile("2022-10-19-wbm-computed-structure-entries.json.bz2", _figshare(40344463),
                           md5="481959b65f28150ae6ee7297ddeba538", description="relaxed structures and energies"),
                RemoteFile("2022-10-19-wbm-init-structs.json.bz2", _figshare(40344466),
                           md5="ff2c40a3a7bf65468852b67f0dbc67df", description="unrelaxed (initial) structures"),
            )),
    Release("wbm", "moyo-0.3.1", licence="CC-BY-4.0 (matbench-discovery)",
            description="space groups and Wyckoff symbols of the relaxed WBM structures (moyopy 0.3.1, symprec 1e-2)",
            files=(
                RemoteFile("mbd_wbm_dft-geo-opt-symprec1e-2-moyo.csv.gz",
                           _github(_MBD, "76abf99ad0ac730f8908b6f09276e3f18ea3174a",
                                   "data/wbm/dft-geo-opt-symprec=1e-2-moyo=0.3.1.csv.gz"),
                           sha256="40f23658a0b2550a34b04353e78df7fea5135486be89caee0a52c3df1506591e", size=2011610,
                           description="also figshare file 52066799"),
            )),
    Release("taata", "aviary-raw-poscars", default=True, licence="see the TAATA publication",
            description="TAATA Ti/Zr/Hf-Zn-N subset as raw httk POSCARs (line 1: total energy, run path, tags)",
            files=tuple(
                RemoteFile(f"{stem}.poscar", _github(_AVIARY, "a021eb723a5128d45df7387ba57ec50a4834afe9",
                                                     f"examples/inputs/raw/{stem}.poscar"),
                           sha256=sha, size=int(size))
                for stem, sha, size in (row.split() for row in _TAATA_POSCARS)
            )),
    Release("taata", "aviary-examples", licence="see the TAATA publication",
            description="TAATA Ti/Zr/Hf-Zn-N examples with structures, from aviary's examples",
            files=(
                RemoteFile("aviary_examples.json",
                           _github(_AVIARY, "a021eb723a5128d45df7387ba57ec50a4834afe9",
                                   "examples/inputs/examples.json"),
                           sha256="4ce1e41e9fdc2d744fb1714ba177a15f53b65a0efc99c74055ae0b52f7f1bc5c", size=215615),
            )),
    Release("supercon", "stanev-2018", default=True, licence="see Stanev et al. 2018 (SuperCon, NIMS)",
            description="SuperCon formulas and Tc as used by Stanev et al. 2018",
            files=(
                RemoteFile("Supercon_data.csv",
                           _github("vstanev1/Supercon", "6e56e577b2239ebb6bebdcaeefc9ba470a3d5ce5",
                                   "Supercon_data.csv"),
                           sha256="b34a955cc59f7a1556bc92c4b9db559bfd634c03227b7e95337a2e5d69227dd6", size=357918),
            )),
    Release("supercon", "3dsc-icsd", licence="CC-BY-4.0 (3DSC)",
            description="3DSC: SuperCon entries matched to ICSD ids (formula, Tc, ICSD id, synth_doped)",
            files=(
                RemoteFile("3DSC_ICSD_only_IDs.csv",
                           _github("aimat-lab/3DSC", _3DSC_AT,
                                   "superconductors_3D/data/final/ICSD/3DSC_ICSD_only_IDs.csv"),
                           sha256="5418d596e167725005b2abbc6d948a39a394ed8e63ab47f1851c91c9ffd5ba7d", size=3432596),
            )),
    Release("synthesis", "2019-12-03", default=True, licence="CC-BY-4.0 (Kononova et al. 2019)",
            description="text-mined solid-state synthesis recipes (Kononova et al., Sci. Data 6, 203 (2019))",
            files=(
                RemoteFile("solid-state_dataset_2019-12-03.json.xz",
                           _github("CederGroupHub/text-mined-synthesis_public",
                                   "fca0a994ddb36b37d39b803e8a21880aaecb1d71",
                                   "solid-state_dataset_2019-12-03.json.xz"),
                           sha256="7559aafabfbe6be5ceef5cfeb5cbf046ce95f10c1ae0b3536d4e5eb427777e94", size=3391040),
            )),
)


def builtin_registry() -> Registry:
    """The releases that ship with matlake."""
    registry = Registry()
    for release in BUILTIN_RELEASES:
        registry.add(release)
    return registry


def load_registry(path: Path) -> Registry:
    """Releases from a TOML file, e.g. a private mirror's own sources or a release newer than this code.

    Layout: one table per source and release, with a list of files::

        [mp."aviary-2021"]
        description = "..."
        default = true                      # optional: the release used when none is named
        api_key_env = "MP_API_KEY"          # optional
        [[mp."aviary-2021".files]]
        name = "aviary_mp-formation.csv"
        url = "https://..."
        sha256 = "..."                      # or md5 = "..."
        size = 3307303                      # optional
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the download registry {path}: {exc}") from None
    registry = Registry()
    for source, releases in data.items():
        if not isinstance(releases, dict):
            raise ConfigError(f"{path}: [{source}] must be a table of releases")
        for tag, spec in releases.items():
            registry.add(_release_from_toml(path, source, tag, spec))
    return registry


def registry(extra: Path | None = None) -> Registry:
    """The built-in registry, plus the TOML file ``extra`` or ``$MATLAKE_REGISTRY`` when given."""
    extra = extra or (Path(os.environ[REGISTRY_ENV]) if os.environ.get(REGISTRY_ENV) else None)
    base = builtin_registry()
    return base.merged(load_registry(extra)) if extra else base


def get_release(source: str, tag: str | None = None, *, registry_path: Path | None = None) -> Release:
    """The registered release ``tag`` of ``source`` (default: the source's default release)."""
    return registry(registry_path).get(source, tag)


def _release_from_toml(path: Path, source: str, tag: str, spec: Any) -> Release:
    where = f"{path}: [{source}.{tag!r}]"
    if not isinstance(spec, dict) or not isinstance(spec.get("files"), list) or not spec["files"]:
        raise ConfigError(f"{where} needs a non-empty list of [[files]]")
    files = []
    for i, item in enumerate(spec["files"]):
        if not isinstance(item, dict):
            raise ConfigError(f"{where} files[{i}] must be a table")
        unknown = set(item) - {"name", "url", "sha256", "md5", "size", "description"}
        if unknown or "name" not in item or "url" not in item:
            raise ConfigError(f"{where} files[{i}] needs name and url (and sha256 or md5); unknown keys: "
                              f"{', '.join(sorted(unknown)) or 'none'}")
        files.append(RemoteFile(**{k: item[k] for k in item}))
    unknown = set(spec) - {"files", "description", "licence", "default", "api_key_env", "api_key_header"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys {', '.join(sorted(unknown))}")
    return Release(source=source, tag=tag, files=tuple(files),
                   **{k: v for k, v in spec.items() if k != "files"})


def _validate(release: Release) -> None:
    """A registry entry must be safe to use as cache paths and must be verifiable."""
    where = f"release {release.source}/{release.tag}"
    for label, value in (("source", release.source), ("tag", release.tag)):
        if not isinstance(value, str) or not _SAFE_NAME.match(value):
            raise ConfigError(f"{where}: {label} {value!r} must be letters, digits and . _ + = -")
    names = [f.name for f in release.files]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: file names must be unique")
    for f in release.files:
        if not isinstance(f.name, str) or not _SAFE_NAME.match(f.name):
            raise ConfigError(f"{where}: file name {f.name!r} must be one plain file name")
        if not isinstance(f.url, str) or urlsplit(f.url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: {f.name}: url {f.url!r} must be http(s)")
        if not (f.sha256 or f.md5):
            raise ConfigError(f"{where}: {f.name} has no checksum (sha256 or md5): unverifiable files are refused")
        for algorithm in ("sha256", "md5"):
            value = getattr(f, algorithm)
            if value is not None and not (isinstance(value, str) and _HEX[algorithm].match(value)):
                raise ConfigError(f"{where}: {f.name}: {algorithm} {value!r} is not a lowercase hex digest")
        if f.size is not None and (not isinstance(f.size, int) or isinstance(f.size, bool) or f.size < 0):
            raise ConfigError(f"{where}: {f.name}: size {f.size!r} must be a whole number of bytes")


# ---- fetching ---------------------------------------------------------------------------------------------------


def fetch_release(
    release: Release,
    *,
    cache_dir: Path | None = None,
    mirror: str | Path | None = None,
    retries: int = DEFAULT_RETRIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: bool | None = None,
) -> list[Path]:
    """Download (or find in the cache) and verify every file of ``release``; the local paths, in registry order.

    ``cache_dir`` defaults to the configured download cache; ``mirror`` to ``$MATLAKE_MIRROR``; ``progress`` to a bar
    when stderr is a terminal (and tqdm is installed).
    """
    root = Path(cache_dir) if cache_dir is not None else get_settings().resolved_cache_dir
    folder = root / release.source / release.tag
    mirror = mirror if mirror is not None else (os.environ.get(MIRROR_ENV) or None)
    return [fetch_file(release, remote, folder, mirror=mirror, retries=retries, timeout_s=timeout_s,
                       progress=progress) for remote in release.files]


def fetch_file(
    release: Release,
    remote: RemoteFile,
    folder: Path,
    *,
    mirror: str | Path | None = None,
    retries: int = DEFAULT_RETRIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: bool | None = None,
) -> Path:
    """One file of ``release`` into ``folder``: a verified cached copy is used as is, anything else is (re)fetched."""
    url, inner, attempts = _source_of(release, remote, mirror, retries, timeout_s, progress)
    checked = _CheckedDownloader(inner, remote)
    store = pooch.create(path=folder, base_url="", registry={remote.name: remote.known_hash},
                         urls={remote.name: url}, retry_if_failed=attempts - 1, allow_updates=True)
    try:
        path = Path(store.fetch(remote.name, downloader=checked))
    except _Refused as exc:
        raise DownloadError(f"{remote.name}: {exc}") from None
    except ValueError as exc:  # pooch: checksum mismatch (or our size check) after the last attempt
        raise DownloadError(_mismatch_message(remote, url, checked, exc)) from None
    except requests.RequestException as exc:
        raise DownloadError(f"{remote.name}: download from {_display(url)} failed after {checked.attempts} "
                            f"attempt(s): {type(exc).__name__}: {_short(exc)}") from None
    except OSError as exc:
        raise DownloadError(f"{remote.name}: cannot write to the download cache {folder}: {exc}") from None
    if checked.attempts:  # pooch's temporary files are private (0600): give the new file the usual permissions
        _apply_umask(path)
        log.info("fetched %s (%s) from %s", remote.name, release.tag, _display(url))
    return path


class _Refused(Exception):
    """A failure that retrying cannot fix (HTTP 4xx, a file missing from a mirror folder): pooch does not retry it."""


class _CheckedDownloader:
    """Wraps a pooch downloader: counts attempts, records what arrived (size, hashes) so a refusal can say what was
    received, checks the size, and turns permanent HTTP errors into an immediate failure instead of retries."""

    def __init__(self, inner: Callable[..., Any], remote: RemoteFile) -> None:
        self.inner = inner
        self.remote = remote
        self.attempts = 0
        self.received: dict[str, Any] | None = None

    def __call__(self, url: str, output_file: str, pooch_obj: Any) -> None:
        self.attempts += 1
        self.received = None
        try:
            self.inner(url, output_file, pooch_obj)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status is not None and 400 <= status < 500 and status not in (408, 425, 429):
                raise _Refused(_http_refusal(self.remote, url, status, exc.response.reason)) from None
            raise
        self.received = _digest(Path(output_file))
        if self.remote.size is not None and self.received["size"] != self.remote.size:
            raise ValueError("size mismatch")  # pooch deletes the partial file and retries


def _source_of(release: Release, remote: RemoteFile, mirror: str | Path | None, retries: int, timeout_s: float,
               progress: bool | None) -> tuple[str, Callable[..., Any], int]:
    """Where to get ``remote`` (the registered URL or the mirror), with which downloader and how many attempts."""
    attempts = 1 + max(int(retries), 0)
    if mirror is not None:
        text = str(mirror)
        scheme = urlsplit(text).scheme
        if scheme in ("http", "https"):
            url = f"{text.rstrip('/')}/{release.source}/{release.tag}/{remote.name}"
            return url, _http(release, url, remote.url, timeout_s, progress), attempts
        base = Path(unquote(urlsplit(text).path)) if scheme == "file" else Path(text)
        candidates = [base / release.source / release.tag / remote.name, base / release.source / remote.name,
                      base / remote.name]
        return str(candidates[0]), _FolderCopy(candidates), 1
    return remote.url, _http(release, remote.url, remote.url, timeout_s, progress), attempts


def _http(release: Release, url: str, registered_url: str, timeout_s: float,
          progress: bool | None) -> pooch.HTTPDownloader:
    if progress is None:
        progress = sys.stderr.isatty() and _has_tqdm()
    kwargs: dict[str, Any] = {"timeout": (min(timeout_s, 30.0), timeout_s)}
    key = os.environ.get(release.api_key_env) if release.api_key_env else None
    if key:
        kwargs["auth"] = _HeaderKey(release.api_key_header, key, _origin(registered_url))
    return pooch.HTTPDownloader(progressbar=bool(progress), chunk_size=CHUNK_BYTES, **kwargs)


class _HeaderKey(AuthBase):
    """Sends an API key header to one origin (scheme, host, port) only: not to a mirror, and not across a redirect
    elsewhere (requests copies custom headers onto redirects, so the key is removed before such a redirect).
    """

    def __init__(self, header: str, key: str, origin: tuple[str, str | None, int | None]) -> None:
        self._header, self._key, self._origin = header, key, origin

    def __repr__(self) -> str:  # never show the key
        return f"_HeaderKey({self._header}, origin={self._origin})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if _origin(request.url) == self._origin:
            request.headers[self._header] = self._key
            request.register_hook("response", self._strip_on_foreign_redirect)
        return request

    def _strip_on_foreign_redirect(self, response: requests.Response, **_: Any) -> requests.Response:
        if response.is_redirect:
            if _origin(requests.compat.urljoin(response.url, response.headers["location"])) != self._origin:
                response.request.headers.pop(self._header, None)
        return response


class _FolderCopy:
    """A pooch downloader that copies from a mirror folder (the first of ``candidates`` that exists)."""

    def __init__(self, candidates: list[Path]) -> None:
        self.candidates = candidates

    def __call__(self, url: str, output_file: str, pooch_obj: Any) -> None:
        for candidate in self.candidates:
            if candidate.is_file():
                shutil.copyfile(candidate, output_file)
                return
        tried = ", ".join(str(c) for c in self.candidates)
        raise _Refused(f"not in the mirror folder (looked for {tried})")


def _apply_umask(path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    path.chmod(0o666 & ~mask)


def _digest(path: Path) -> dict[str, Any]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def _mismatch_message(remote: RemoteFile, url: str, checked: _CheckedDownloader, exc: ValueError) -> str:
    got = checked.received
    tail = (f" after {checked.attempts} attempt(s) from {_display(url)}; the download was discarded (nothing was "
            "cached). The file changed at its source or was corrupted in transit: check the registry entry or the "
            "mirror's copy.")
    if got is None:
        return f"{remote.name}: verification failed{tail} ({exc})"
    if remote.size is not None and got["size"] != remote.size:
        return (f"{remote.name}: size mismatch: expected {remote.size} bytes, got {got['size']} bytes "
                f"(sha256 {got['sha256']}){tail}")
    actual = got[remote.algorithm]
    also = f" (sha256 {got['sha256']})" if remote.algorithm != "sha256" else ""
    return (f"{remote.name}: checksum mismatch: expected {remote.algorithm} {remote.expected_hash}, "
            f"got {remote.algorithm} {actual}{also}, {got['size']} bytes{tail}")


def _http_refusal(remote: RemoteFile, url: str, status: int, reason: str | None) -> str:
    hint = {404: "the file is not at that address (check the registry entry, or a mirror's layout "
                 "<mirror>/<source>/<release>/<name>)",
            401: "the server wants credentials (set the release's API key variable)",
            403: "access refused (check the API key, or whether the file is public)"}.get(status, "refused")
    return f"{_display(url)} answered HTTP {status} {reason or ''}".rstrip() + f": {hint}"


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _display(url: str) -> str:
    """A URL without any user:password part, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    return url


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True

