"""The store's bulk paths in bounded memory: an import and a summary hold a batch, not the rows.

At 1,000,000 rows the pipeline's store step once held every record in memory (all the
documents built before the first write, then every stored document again for the summary
query): 7.4 GB. Here the memory Python allocates while importing (and then summarizing)
``ROWS`` and ``4 * ROWS`` rows is measured with ``tracemalloc``: what it grows by per
added row must stay far below what one record costs. A third test shows the measure sees
memory that does grow with the rows (reading a dataset back into a frame must).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest

from store.transfer import import_dataset, records_frame, summarize
from tabular.config import load_config
from tabular.datasets import load_raw, prepare
from tests.conftest import make_bookings_frame, write_bookings_dataset
from tests.test_store import fresh_store

#: Rows of the small import; the large one has four times as many.
ROWS = 2_000
#: Records built and inserted at a time.
BATCH = 250
#: The most an import or a summary may grow by per added row, in bytes. Measured on these
#: 24 columns: the import 27 and the summary 0 (before: 1,590 and 3,332, every record held;
#: reading the dataset back into a frame: 4,620). What an import must keep per row is its
#: hash and its number among identical rows (16 bytes, more while they are computed).
BOUND = 400


@pytest.fixture
def store(tmp_path, monkeypatch):
    yield from fresh_store(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def bookings(tmp_path_factory):
    """The prepared bookings rows (``4 * ROWS``) and their config."""
    folder = tmp_path_factory.mktemp("bookings")
    config = load_config(write_bookings_dataset(folder, make_bookings_frame(rows=4 * ROWS)))
    data, _ = prepare(load_raw(config), config)
    return config, data


def peak_bytes(function: Callable[[], object]) -> int:
    """The most memory Python held at once while ``function`` ran, above what it held before."""
    gc.collect()
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def growth_per_row(function: Callable[[str, int], object]) -> float:
    """Bytes the peak grows by per added row, from ``ROWS`` to ``4 * ROWS`` rows.

    ``function(dataset, rows)`` handles the first ``rows`` rows under its own dataset name.
    """
    function("warmup", 100)  # imports, caches and connections made once
    small = peak_bytes(lambda: function("small", ROWS))
    large = peak_bytes(lambda: function("large", 4 * ROWS))
    return (large - small) / (3 * ROWS)


def test_an_import_holds_a_batch_not_the_rows(store, bookings):
    config, data = bookings
    frames = {rows: data.head(rows).copy() for rows in (100, ROWS, 4 * ROWS)}  # not measured

    def load(dataset, rows):
        named = config.with_overrides({"name": dataset})
        report = import_dataset(named, frame=frames[rows], batch_size=BATCH)
        assert report.inserted == rows

    growth = growth_per_row(load)
    assert growth < BOUND, f"the import grows by {growth:.0f} bytes a row"


def _import_three_sizes(config, data) -> None:
    """Store a warm-up, a small and a large dataset (the sizes ``growth_per_row`` compares)."""
    for dataset, rows in (("warmup", 100), ("small", ROWS), ("large", 4 * ROWS)):
        import_dataset(config.with_overrides({"name": dataset}), frame=data.head(rows))


def test_a_summary_holds_its_groups_not_the_rows(store, bookings):
    _import_three_sizes(*bookings)

    def query(dataset, rows):
        result = summarize(dataset, by="country", measure="adr")
        assert sum(row[1] for row in result.rows) == rows

    growth = growth_per_row(query)
    assert growth < BOUND, f"the summary grows by {growth:.0f} bytes a row"


def test_the_measure_sees_memory_that_grows_with_the_rows(store, bookings):
    """Reading a dataset back into a frame must hold every row: the measure shows it."""
    _import_three_sizes(*bookings)

    def read(dataset, rows):
        assert len(records_frame(dataset)) == rows

    growth = growth_per_row(read)
    assert growth > 2 * BOUND, f"reading a dataset back grows by only {growth:.0f} bytes a row"
