"""The verdicts of the performance suite (``benchmarks/perf/suite.py``): each figure is
met or missed against its target as the numbers say, and the table shows it."""

from benchmarks.perf import suite


def _out_of_core(start_anon, peak_anon, file_gb=1.0):
    return {
        "file_GB": file_gb,
        "memmap_fit": {
            "train_rows_per_s": 500.0,
            "peak_MB": {"RssAnon": peak_anon},
            "start_MB": {"RssAnon": start_anon},
        },
        "in_memory_subset_fit": {"train_rows_per_s": 1000.0},
        "memmap_over_in_memory_train_rate": 0.5,
    }


def test_out_of_core_memory_is_met_only_below_the_file_and_2_gb():
    rate, memory = suite.out_of_core_rows(_out_of_core(200.0, 900.0), "test")
    assert rate["met"] is None and rate["value"] == 0.5
    assert memory["met"] is True and memory["value"] == 700.0
    # X loaded whole: growth above the file's 954 MB.
    assert suite.out_of_core_rows(_out_of_core(200.0, 1200.0), "test")[1]["met"] is False
    # Below the file (20 GB) but above the 2 GB ceiling.
    assert suite.out_of_core_rows(_out_of_core(200.0, 2100.0, 20.0), "test")[1]["met"] is False


def test_table_marks_met_missed_and_reported():
    rows = [
        suite.row("a", 1.0, "1.00x", ">= 0.95x", True),
        suite.row("b", 0.5, "0.50x", ">= 0.95x", False),
        suite.row("c", 2.0, "2.00x", "-", None),
    ]
    lines = suite.table(rows).splitlines()
    assert lines[0] == "| figure | measured | target | met |"
    assert lines[2].endswith("| met |") and lines[3].endswith("| **missed** |")
    assert lines[4].endswith("| reported |") and len(lines) == 5
