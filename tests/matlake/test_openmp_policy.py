"""``import matlake`` shortens OpenMP's spin-wait (unless the user chose a policy), and Dask workers inherit it."""

from __future__ import annotations

import os
import subprocess
import sys


def _spincount(**env_values: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_values)
    code = "import matlake, os; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_shortens_the_spin_and_respects_the_user():
    assert _spincount() == "10000"
    assert _spincount(GOMP_SPINCOUNT="300000") == "300000"
    assert _spincount(OMP_WAIT_POLICY="ACTIVE") == "unset"


def test_local_cluster_workers_inherit_the_setting():
    from matlake.featurestore.runner import dask_client

    with dask_client(None, n_workers=1) as client:
        seen = client.run(lambda: os.environ.get("GOMP_SPINCOUNT"))
    assert list(seen.values()) == [os.environ.get("GOMP_SPINCOUNT")]
