"""The test run's own ordering (``tests/conftest.py``): every entry of ``LONG_FIRST`` names a
test module (and test) that exists, so that a renamed file does not silently fall back to its
place in the collection order."""

import re
from pathlib import Path

from tests.conftest import LONG_FIRST

ROOT = Path(__file__).resolve().parents[1]


def test_every_long_first_entry_names_an_existing_test():
    for entry in LONG_FIRST:
        path, _, test = entry.partition("::")
        assert (ROOT / path).is_file(), f"LONG_FIRST: {path} does not exist"
        name = re.sub(r"\[.*$", "", test)
        if name:
            assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), f"LONG_FIRST: no test {name} in {path}"


def test_the_long_tests_come_first(request):
    """In this run's collection, no test outside ``LONG_FIRST`` comes before one inside it."""
    ranks = [next((i for i, p in enumerate(LONG_FIRST) if item.nodeid.startswith(p)), len(LONG_FIRST))
             for item in request.session.items]  # fmt: skip
    assert ranks == sorted(ranks)


def test_the_test_xla_flags_go_with_every_run_that_selects_no_slow_test():
    """``TEST_XLA_FLAGS`` apply to ``make test``, ``test-ci`` and ``test-heavy`` (no ``slow`` test
    can be selected), not to ``test-slow`` or ``test-all``; an unreadable expression counts as
    selecting them (XLA's defaults)."""
    from tests.conftest import _selects_slow

    for expression in ("not slow", "not slow and not heavy", "ci and not slow", "heavy and not slow"):
        assert not _selects_slow(expression), expression
    for expression in ("slow", "slow or not slow", "heavy", "not heavy", "", "mystery", "not slow or x"):
        assert _selects_slow(expression), expression
