"""Soft labels, shared by every backend: a class condition as a table row or a mixture of rows.

A backend keeps per-class tables (embedding rows, spatial templates); a hard label picks a row and
a probability vector p over the classes picks `p @ table`, so a one-hot p gives that row exactly.
"""

from __future__ import annotations

import torch

from .generator import check_condition


def mix(table: torch.Tensor, condition: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows of `table` for class ids (B,), or `p @ table[:num_classes]` for probabilities (B, num_classes).

    `table` is indexed by class along its first dimension and may have any trailing shape; the
    result has shape (B, *table.shape[1:]). Rows past `num_classes` (a null class) are reachable by
    id only, so a probability vector never mixes them in.
    """
    check_condition(condition, num_classes)
    if not condition.is_floating_point():
        return table[condition.to(table.device)]
    rows = table[:num_classes]
    # One matmul over flattened trailing dimensions: with a one-hot p every other term is an exact
    # zero, so the product equals the picked row bit for bit (in any dtype, unless TF32 matmuls are
    # switched on, which round the table's fp32 rows).
    mixed = condition.to(table.device, table.dtype) @ rows.reshape(num_classes, -1)
    return mixed.reshape(len(condition), *table.shape[1:])
