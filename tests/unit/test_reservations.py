"""resources.reservation on the live clusters (issue 26): a job runs in its reservation, and a
reservation it could not run in is refused before anything is queued, naming what exists."""

import pytest


@pytest.mark.parametrize(
    "users, accounts, user, account, allowed",
    [
        ([], [], "ann", None, True),  # open to all
        (["ann", "bob"], [], "ann", None, True),
        (["bob"], [], "ann", None, False),
        (["-bob"], [], "ann", None, True),  # all but bob
        (["-ann"], [], "ann", None, False),
        (["bob"], ["lab1"], "ann", "lab1", True),  # in by the job's account
        (["bob"], ["lab1"], "ann", "lab2", False),
        (["*"], [], "ann", None, True),  # PBS's *@*
    ],
)
def test_who_may_use_a_reservation(users, accounts, user, account, allowed):
    from dlhpc.schedulers.reservations import Reservation, may_use

    reservation = Reservation("ws", "ACTIVE", True, 0, 1, users=users, accounts=accounts)
    assert may_use(reservation, user, account) is allowed
