"""Query cost: every operation priced from its document and variables before it runs."""

from mlc_graph.guards.cost.analyzer import CostAnalysis, CostAnalyzer, find_fragment_cycle
from mlc_graph.guards.cost.weights import DEFAULT_LIST_SIZE, MUTATION_WEIGHT, FieldCost, build_weight_table
from mlc_graph.platform.errors import CostValidationError, QueryTooComplexError

__all__ = [
    "DEFAULT_LIST_SIZE",
    "MUTATION_WEIGHT",
    "CostAnalysis",
    "CostAnalyzer",
    "CostValidationError",
    "FieldCost",
    "QueryTooComplexError",
    "build_weight_table",
    "find_fragment_cycle",
]
