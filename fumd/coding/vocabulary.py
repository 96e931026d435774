"""Label vocabulary: label i is decoded by output population i. It grows as new labels appear,
up to ``max_labels`` (the number of output populations), after which new labels are rejected."""
from __future__ import annotations

from ..errors import VocabularyFullError


class LabelVocabulary:
    def __init__(self, capacity: int, labels: list[str] | None = None):
        self.capacity = capacity
        self.labels: list[str] = list(labels or [])
        self._index = {label: i for i, label in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int | None:
        return self._index.get(label)

    def check_room(self, label: str) -> None:
        if label not in self._index and len(self.labels) >= self.capacity:
            raise VocabularyFullError(
                f"label {label!r}: the vocabulary is full ({self.capacity} labels; raise network.max_labels)"
            )

    def add(self, label: str) -> int:
        self.check_room(label)
        if label not in self._index:
            self._index[label] = len(self.labels)
            self.labels.append(label)
        return self._index[label]

    def name(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else f"action_{index}"
