"""What a verification finds, as plain data: differences, per-table results, the report.

A difference names where (area, database, object, key, columns) and what (problem), never a
value from the data: keys are primary-key values or row hashes, columns are names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEPTHS = ("counts", "checksums", "full")


@dataclass(frozen=True)
class Difference:
    area: str            # rows, schema, sequence, documents, business, evidence, database
    database: str        # "system/database", or the system for documents
    object: str          # table, index, sequence, document path, check name
    problem: str         # changed, missing_on_target, extra_on_target, ...
    remedy: str
    key: dict = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    detail: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["columns"] = list(self.columns)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Difference:
        return cls(**{**data, "columns": tuple(data.get("columns", ()))})


@dataclass(frozen=True)
class TableResult:
    database: str
    table: str
    method: str          # counts, checksums, multiset
    source_rows: int
    target_rows: int
    seconds: float
    differences: tuple[Difference, ...] = ()
    queries: int = 0

    @property
    def status(self) -> str:
        return "differs" if self.differences else "ok"

    def to_json(self) -> dict:
        return {"database": self.database, "table": self.table, "method": self.method, "status": self.status,
                "source_rows": self.source_rows, "target_rows": self.target_rows,
                "seconds": round(self.seconds, 3), "queries": self.queries,
                "differences": len(self.differences)}


@dataclass
class Section:
    """One checked unit besides tables: a document archive, a business check, an evidence table."""

    area: str
    database: str
    name: str
    status: str
    facts: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    wave: str
    run_id: str | None
    depth: str
    started: str
    seconds: float = 0.0
    tables: list[TableResult] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.differences

    def add(self, differences) -> None:
        self.differences.extend(differences)

    def by_area(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.differences:
            counts[d.area] = counts.get(d.area, 0) + 1
        return counts

    def to_json(self) -> dict:
        return {"wave": self.wave, "run_id": self.run_id, "depth": self.depth, "started": self.started,
                "seconds": round(self.seconds, 3), "status": "passed" if self.passed else "failed",
                "summary": {"tables": len(self.tables), "differences": len(self.differences),
                            "by_area": self.by_area()},
                "tables": [t.to_json() for t in self.tables],
                "sections": [s.to_json() for s in self.sections],
                "differences": [d.to_json() for d in self.differences]}
