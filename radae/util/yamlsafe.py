"""One YAML loader for every file a user writes by hand (pipelines, PyRadiomics parameter files): safe and bounded.

``yaml.safe_load`` refuses Python tags, but it accepts anchors and aliases, so a few hundred bytes (the "billion
laughs" alias bomb) describe a document of billions of nodes. PyYAML builds it with shared references, cheaply;
whatever walks it afterwards (hashing, PyRadiomics' schema check, copying, printing) expands it and runs out of
time and memory. :func:`load_bounded` composes the node graph first, counts the nodes the document would have with
every alias expanded (memoised per node, so the count itself is cheap) and refuses documents above
:data:`MAX_NODES` or with a recursive alias before anything is constructed.
"""
from __future__ import annotations

from typing import Any

import yaml

from radae.util.errors import ConfigError

#: expanded nodes allowed in one document (radae's own pipelines have a few hundred)
MAX_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int], limit: int) -> int:
    """Nodes in ``node`` with aliases expanded; stops counting above ``limit`` (returns limit + 1)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:  # an alias inside its own anchor: an infinite document
        return limit + 1
    active.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [x for pair in node.value for x in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, active, limit)
        if total > limit:
            total = limit + 1
            break
    active.discard(key)
    memo[key] = total
    return total


def load_bounded(text: str, source: object, what: str = "YAML file", max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load(text)``, refusing documents that expand to more than ``max_nodes`` nodes.

    ``source`` (the message's prefix: the file, as the caller's messages name it) and ``what`` name the file in the
    ConfigError; YAML syntax errors propagate as
    ``yaml.YAMLError`` for the caller to format.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        n = _expanded_size(node, {}, set(), max_nodes)
        if n > max_nodes:
            raise ConfigError(f"{source}: {what} expands to more than {max_nodes:,} YAML nodes through anchors and "
                              "aliases (an alias bomb, or a recursive alias) -> write the values out without aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()
