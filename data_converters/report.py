"""Per-row validation errors and the end-of-run summary of a conversion."""

from __future__ import annotations

from dataclasses import dataclass, field


class RowError(ValueError):
    """Raised by a row converter when one input row is invalid; the conversion goes on."""


class ConversionFailed(RuntimeError):
    """Raised in strict mode at the first invalid row; the output file is not written."""


class NoRowsConverted(ConversionFailed):
    """Raised when no input row survives: no output file is written (and nothing may be registered)."""

    def __init__(self, report: ConversionReport):
        self.report = report
        reasons = "; ".join(str(problem) for problem in report.problems[:3])
        super().__init__(f"no row of {report.input_path} survived ({report.summary()})" + (f": {reasons}" if reasons else ""))


@dataclass
class RowProblem:
    location: str  # "train.json:line 12" or "data.parquet:row 7"
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class ConversionReport:
    """What a conversion read, wrote and rejected."""

    input_path: str
    output_path: str
    rows_read: int = 0
    rows_written: int = 0
    rows_filtered: int = 0  # valid rows left out on purpose (e.g. another split)
    problems: list[RowProblem] = field(default_factory=list)
    problems_dropped: int = 0  # problems beyond ``max_problems`` are counted, not kept
    max_problems: int = 1000
    num_samples: int | None = None  # LLaMA-Factory ``num_samples`` from a random:N / N% strategy

    @property
    def rows_rejected(self) -> int:
        return len(self.problems) + self.problems_dropped

    def add_problem(self, location: str, message: str) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(RowProblem(location, message))
        else:
            self.problems_dropped += 1

    def summary(self) -> str:
        return (
            f"{self.input_path} -> {self.output_path}: {self.rows_read} rows read, "
            f"{self.rows_written} written, {self.rows_filtered} filtered, {self.rows_rejected} rejected"
        )

    def to_dict(self) -> dict:
        return {
            "input_path": self.input_path,
            "output_path": self.output_path,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_filtered": self.rows_filtered,
            "rows_rejected": self.rows_rejected,
            "num_samples": self.num_samples,
            "problems": [str(problem) for problem in self.problems],
        }
