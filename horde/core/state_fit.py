"""Does a state fit a learner? Its tree, shapes and dtypes against the learner's own ``init``.

A state is a pytree whose layout a learner's configuration fixes: the trunk's layer sizes, the
observation size, the number of heads, which traces and optimizer states exist. A state from
another configuration can often still be fed to a compiled update (JAX retraces for new
shapes) and silently learn with the other trunk, or be saved to a checkpoint that can never be
loaded. Comparing the state with ``jax.eval_shape`` of the learner's ``init`` (nothing is
computed) catches every such difference, whatever the layout, and names the first one.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["StateTemplate", "leaf_name", "state_mismatch"]


def leaf_name(path: tuple) -> str:
    """A pytree key path as ``a/b/0`` (attribute names, sequence indices and dict keys)."""
    parts = []
    for p in path:
        for attr in ("name", "idx", "key"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
        else:
            parts.append(str(p))
    return "/".join(parts)


def _same_tree(a: Any, b: Any) -> bool:
    # PyTreeDef's stubs declare no __eq__; the objects compare by structure.
    return bool(a == b)


class StateTemplate:
    """The tree, shapes and dtypes of a learner's state, to check given states against.

    Args:
        template: what the learner's ``init`` returns, as arrays or ``jax.ShapeDtypeStruct``
            (``jax.eval_shape`` of it: nothing is computed).
    """

    def __init__(self, template: Any) -> None:
        self.template = template
        leaves, self.treedef = jax.tree_util.tree_flatten(template)
        self.specs = [(tuple(leaf.shape), leaf.dtype) for leaf in leaves]

    def mismatch(self, state: Any, leading: tuple[int, ...] = ()) -> str | None:
        """How ``state`` differs from the template, or None where it has the same tree,
        shapes and dtypes (see ``state_mismatch``)."""
        leaves, treedef = jax.tree_util.tree_flatten(state)
        same = _same_tree(treedef, self.treedef)
        if same and all(
            tuple(np.shape(leaf)) == tuple(leading) + shape and getattr(leaf, "dtype", None) == dtype
            for leaf, (shape, dtype) in zip(leaves, self.specs)
        ):
            return None
        return state_mismatch(state, self.template, leading) or "its tree structure differs"


def state_mismatch(state: Any, template: Any, leading: tuple[int, ...] = ()) -> str | None:
    """How ``state`` differs from ``template`` (a state, or ``jax.eval_shape`` of one), or None
    where it has the same tree, shapes and dtypes.

    Args:
        state: the state given.
        template: what the learner's ``init`` returns (arrays or ``jax.ShapeDtypeStruct``).
        leading: axes every leaf of ``state`` has before the template's shape (``(n_copies,)``
            for a state batched over copies).

    Returns:
        None, or one line naming the first differing leaf by its path: a missing or extra
        part of the tree, or a shape or dtype.
    """
    got, got_def = jax.tree_util.tree_flatten_with_path(state)
    want, want_def = jax.tree_util.tree_flatten_with_path(template)
    same_tree = _same_tree(got_def, want_def)
    got_names = [leaf_name(p) for p, _ in got]
    want_names = [leaf_name(p) for p, _ in want]
    if not same_tree or got_names != want_names:
        missing = [n for n in want_names if n not in got_names]
        extra = [n for n in got_names if n not in want_names]
        if missing or extra:
            parts = ([f"missing {missing[:3]}"] if missing else []) + ([f"unexpected {extra[:3]}"] if extra else [])
            return f"its arrays are not this learner's ({'; '.join(parts)})"
        return f"its tree structure differs ({got_def} instead of {want_def})"
    for name, (_, g), (_, w) in zip(want_names, got, want):
        shape, expected = tuple(np.shape(g)), tuple(leading) + tuple(w.shape)
        if shape != expected:
            return f"{name} has shape {shape}, expected {expected}"
        g_dtype = getattr(g, "dtype", None)
        if g_dtype != w.dtype:
            return f"{name} has dtype {g_dtype}, expected {w.dtype}"
    return None
