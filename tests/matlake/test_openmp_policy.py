"""``import matlake`` makes OpenMP waiters sleep (unless the user chose otherwise), and Dask workers inherit it."""

from __future__ import annotations

import os
import subprocess
import sys


def _policy(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    code = "import matlake, os; print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_sets_passive_waiting_and_respects_the_user():
    assert _policy(None) == "PASSIVE"
    assert _policy("ACTIVE") == "ACTIVE"


def test_local_cluster_workers_inherit_the_policy():
    from matlake.featurestore.runner import dask_client

    with dask_client(None, n_workers=1) as client:
        seen = client.run(lambda: os.environ.get("OMP_WAIT_POLICY"))
    assert list(seen.values()) == [os.environ["OMP_WAIT_POLICY"]]
