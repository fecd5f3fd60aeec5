"""Each served VAE as two OIP models, `<name>-encoder` and `<name>-decoder`: their metadata
(from the manifest, `vae_manifest.triton`) and their inputs held to the same rules as the
service's own routes (`/encode`'s images, `/decode`'s latents: count, shape, finite, bounds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api.codecs.json import check_within
from service.api.oip.codec import OIPError, quoted
from service.api.request_rules import FieldRule
from vae_manifest import ModelManifest
from vae_manifest import triton as tm


@dataclass(frozen=True)
class OIPModel:
    name: str
    graph: tm.Graph
    input: str  # the graph's one input tensor
    width: int  # its row width
    outputs: tuple[str, ...]
    rule: FieldRule  # the rule of the matching field of the service's own route
    metadata: dict[str, Any]

    def rows(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The request's one input as (n, width) float32 rows, or OIPError naming it."""
        unknown = sorted(set(inputs) - {self.input})
        if unknown:
            raise OIPError(
                f"unknown input {quoted(unknown[0])} for model {quoted(self.name)} "
                f"(its input is {self.input!r})"
            )
        if self.input not in inputs:
            raise OIPError(f"input {self.input!r} is missing")
        array = inputs[self.input]
        where = f"input {self.input!r}"
        if array.ndim != 2 or array.shape[1] != self.width:
            raise OIPError(f"{where}: shape must be [-1, {self.width}], got {list(array.shape)}")
        rule = self.rule
        if array.shape[0] < max(1, rule.min_items or 1):
            raise OIPError(f"{where}: needs at least one row")
        if rule.max_items is not None and array.shape[0] > rule.max_items:
            raise OIPError(
                f"{where}: at most {rule.max_items} rows per request, got {array.shape[0]}"
            )
        check_within(array, rule, self.input)
        return array

    def check_outputs(self, names: tuple[str, ...]) -> None:
        for name in names:
            if name not in self.outputs:
                raise OIPError(
                    f"unknown output {quoted(name)} for model {quoted(self.name)} "
                    f"(its outputs are {list(self.outputs)})"
                )


def oip_models(manifest: ModelManifest, rules: dict[tm.Graph, FieldRule]) -> dict[str, OIPModel]:
    """The OIP models of one VAE, by name."""
    models = {}
    for graph in tm.GRAPHS:
        spec = tm.graph_spec(manifest, graph)
        (tensor,) = spec.inputs
        width = tensor.shape[-1]
        assert isinstance(width, int)
        model = OIPModel(
            name=tm.model_name(manifest, graph),
            graph=graph,
            input=tensor.name,
            width=width,
            outputs=tuple(t.name for t in spec.outputs),
            rule=rules[graph],
            metadata=tm.model_metadata(manifest, graph),
        )
        models[model.name] = model
    return models
