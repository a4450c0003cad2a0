"""The Kubernetes seam's own logic (no API server needed)."""

from __future__ import annotations

from kubernetes_asyncio.client import V1LabelSelector, V1LabelSelectorRequirement
from roomgate_operator.kube import label_selector


def test_label_selector_query() -> None:
    """A Deployment's selector becomes the pods' labelSelector query, expressions included."""
    selector = V1LabelSelector(
        match_labels={"b": "2", "a": "1"},
        match_expressions=[
            V1LabelSelectorRequirement(key="tier", operator="In", values=["x", "y"]),
            V1LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
        ],
    )
    assert label_selector(selector) == "a=1,b=2,tier in (x,y),!canary"
