"""A small learned text classifier: multinomial logistic regression over sparse TF-IDF features, trained with
Adam in torch (already a dependency) in a fraction of a second on a few thousand labelled questions.

    model = TextClassifier.fit(texts, labels, features)   # features: a text's feature strings
    model.probabilities("how many ppl r there")           # {"count": 0.93, ...}

Routing's fallback (`intents`) trains one on `data/intents.jsonl` when first asked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import torch

Features = Callable[[str], list[str]]


class TextClassifier:
    """Labels by a linear model over TF-IDF (sublinear counts, L2-normalised) of `features`' strings."""

    def __init__(
        self, features: Features, column: dict[str, int], idf: list[float], weight: torch.Tensor, labels: list[str]
    ) -> None:
        self._features = features
        self._column = column
        self._idf = idf
        self._weight = weight  # (F + 1, K): the last row is the bias
        self.labels = labels

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        features: Features,
        penalty: float = 1e-5,
        steps: int = 100,
        rate: float = 0.1,
        least: int = 1,
    ) -> TextClassifier:
        """Trained on `texts` and their `labels`: features seen in at least `least` texts, an L2 `penalty` on the
        weights (per text), `steps` of Adam at `rate`."""
        counted = [Counter(features(text)) for text in texts]
        seen = Counter(feature for found in counted for feature in found)
        kept = [feature for feature, count in seen.items() if count >= least]
        column = {feature: index for index, feature in enumerate(kept)}
        idf = [math.log((1 + len(texts)) / (1 + seen[feature])) + 1 for feature in kept]
        names = sorted(set(labels))
        model = cls(features, column, idf, torch.zeros(len(kept) + 1, len(names)), names)
        rows = model._matrix(counted)
        across = rows.t().coalesce().to_sparse_csr()
        rows = rows.to_sparse_csr()
        target = torch.nn.functional.one_hot(torch.tensor([names.index(label) for label in labels]), len(names))
        weight = torch.zeros(len(kept) + 1, len(names))
        keep = torch.ones(len(kept) + 1, 1)
        keep[-1] = 0.0  # the bias is not penalised
        # Adam on the mean cross-entropy plus the penalty, its gradient written out: no autograd, no optimiser import.
        # On one thread: these small sparse products take ten times longer on several when the cores are busy.
        moment, spread = torch.zeros_like(weight), torch.zeros_like(weight)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for step in range(1, steps + 1):
                error = (torch.softmax(rows @ weight, dim=1) - target) / len(texts)
                gradient = across @ error + 2 * penalty * keep * weight
                moment.mul_(0.9).add_(gradient, alpha=0.1)
                spread.mul_(0.999).addcmul_(gradient, gradient, value=0.001)
                weight -= rate * (moment / (1 - 0.9**step)) / ((spread / (1 - 0.999**step)).sqrt() + 1e-8)
        finally:
            torch.set_num_threads(threads)
        model._weight = weight
        return model

    def _matrix(self, counted: Sequence[Counter[str]]) -> torch.Tensor:
        """Sparse (N, F + 1) rows: each text's TF-IDF, normalised, and a constant 1 for the bias."""
        indices: list[tuple[int, int]] = []
        values: list[float] = []
        bias = len(self._column)
        for row, found in enumerate(counted):
            cells = [(self._column[f], 1 + math.log(n)) for f, n in found.items() if f in self._column]
            scaled = [(column, value * self._idf[column]) for column, value in cells]
            norm = math.sqrt(sum(value * value for _, value in scaled)) or 1.0
            indices += [(row, column) for column, _ in scaled] + [(row, bias)]
            values += [value / norm for _, value in scaled] + [1.0]
        where = torch.tensor(indices, dtype=torch.long).T.reshape(2, -1)
        size = (len(counted), bias + 1)
        with torch.sparse.check_sparse_tensor_invariants(enable=False):  # type: ignore[no-untyped-call]
            return torch.sparse_coo_tensor(where, torch.tensor(values), size).coalesce()

    def probabilities(self, text: str) -> dict[str, float]:
        """Each label's probability for `text`."""
        rows = self._matrix([Counter(self._features(text))])
        found = torch.softmax((rows @ self._weight)[0], dim=0).tolist()
        return dict(zip(self.labels, found))
