"""Checkpointed training resumes exactly where it stopped; a time budget ends training after an epoch."""

from __future__ import annotations

import numpy as np
import pytest

from matlake.errors import InputError
from matlake.modelling.train import TrainConfig, train_member

COMPOSITIONS = [{"Na": 1, "Cl": 1}, {"Mg": 1, "O": 1}, {"Al": 2, "O": 3}, {"Si": 1, "O": 2}, {"Ti": 1, "O": 2},
                {"Ga": 1, "As": 1}, {"Li": 1, "F": 1}, {"Ca": 1, "F": 2}, {"Zn": 1, "S": 1}, {"Cu": 2, "O": 1},
                {"Fe": 2, "O": 3}, {"K": 1, "Br": 1}]
TARGETS = [8.5, 7.8, 8.8, 9.0, 3.2, 1.4, 13.6, 12.0, 3.6, 2.1, 2.2, 7.4]
SMALL = {"elem_fea_len": 16, "n_graph": 1, "elem_heads": 1, "elem_gate_hidden": 16, "elem_msg_hidden": 16,
         "cry_heads": 1, "cry_gate_hidden": 16, "cry_msg_hidden": 16, "out_hidden": (32, 16)}


def config(epochs: int, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=4, seed=3, device="cpu", threads=1, hparams=SMALL, **kw)


def test_resumed_training_equals_uninterrupted(tmp_path):
    straight = train_member(COMPOSITIONS, TARGETS, COMPOSITIONS[:4], TARGETS[:4], config(4))
    path = tmp_path / "member.ckpt"
    first = train_member(COMPOSITIONS, TARGETS, COMPOSITIONS[:4], TARGETS[:4], config(2), checkpoint=path)
    assert len(first.history) == 2 and path.exists()
    resumed = train_member(COMPOSITIONS, TARGETS, COMPOSITIONS[:4], TARGETS[:4], config(4), checkpoint=path)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in straight.history],
                                                                       rel=1e-6)
    assert resumed.best_epoch == straight.best_epoch
    for name, value in straight.state.items():
        np.testing.assert_allclose(resumed.state[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    path = tmp_path / "member.ckpt"
    train_member(COMPOSITIONS, TARGETS, [], [], config(1), checkpoint=path)
    with pytest.raises(InputError, match="learning_rate"):
        train_member(COMPOSITIONS, TARGETS, [], [], config(2, learning_rate=1e-3), checkpoint=path)
    with pytest.raises(InputError, match="training targets"):
        train_member(COMPOSITIONS, [t + 1 for t in TARGETS], [], [], config(2), checkpoint=path)


def test_time_budget_stops_after_an_epoch_and_a_spent_budget_trains_nothing_more(tmp_path):
    path = tmp_path / "member.ckpt"
    result = train_member(COMPOSITIONS, TARGETS, [], [], config(50, time_budget_s=1e-9), checkpoint=path)
    assert len(result.history) == 1
    again = train_member(COMPOSITIONS, TARGETS, [], [], config(50, time_budget_s=1e-9), checkpoint=path)
    assert len(again.history) == 1
    more = train_member(COMPOSITIONS, TARGETS, [], [], config(3), checkpoint=path)  # budget lifted: continues
    assert len(more.history) == 3
