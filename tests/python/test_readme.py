# The README's performance table must be the benchmark run it links to, figure for figure: the
# rows are printed again from that run's results.json by tools/readme_tables.py and compared.
import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_tool():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "tools" / "readme_tables.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def readme_performance_section():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Performance")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_performance_table_is_the_linked_run():
    section = readme_performance_section()
    # The run the section links to: bench/results/<run>/results.md; its JSON lies beside it.
    link = re.search(r"\((bench/results/[^)]+)/results\.md\)", section)
    assert link, "the README's performance section links no bench/results/<run>/results.md"
    run = json.loads((ROOT / link.group(1) / "results.json").read_text())

    rows = [line for line in section.splitlines() if line.startswith("| ")]
    # Footnote markers (" *" after a figure) are the README's own.
    readme_rows = [re.sub(r" \*+(?=\*\*)", "", row) for row in rows]
    expected = load_tool().performance_table(run)
    assert readme_rows == expected


def test_targets_follow_issue_5():
    tool = load_tool()
    # floor = bytes / 4.2 TB/s; the three regimes of issue 5.
    assert tool.target_us(64, 10**6) == 2.5
    assert abs(tool.target_us(2048, 4.2e6 * 10) - 13.0) < 1e-9  # 1.3 x 10 us
    assert tool.target_us(128, 4.2e6) == 3.0  # max(3.0, 1.3 x 1 us)
    assert abs(tool.target_us(4096, 4.2e6 * 100) - 109.2) < 1e-9  # 1.08 x 100 us + 1.2
