"""Each served VAE as three OIP models: `<name>-encoder` and `<name>-decoder` (its ONNX graphs;
metadata from the manifest, `vae_manifest.triton`) and `<name>-score` (`POST /score`'s anomaly
scores; `seed` and `samples` as request parameters). Inputs are held to the same rules as the
service's own routes (`/encode`'s images, `/decode`'s latents: count, shape, finite, bounds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api.codecs.json import check_within, int_field
from service.api.echo import quoted
from service.api.oip.codec import OIPError
from service.api.request_rules import FieldRule, RequestRules
from service.runtime.service import VAEService
from vae_manifest import ModelManifest, scoring
from vae_manifest import triton as tm

SCORE = "score"
SCORE_PLATFORM = "vae_service"  # not an ONNX graph: the service computes it (not exported)


@dataclass(frozen=True)
class OIPModel:
    name: str
    graph: tm.Graph | None  # None: the score model
    input: str  # the model's one input tensor
    width: int  # its row width
    outputs: tuple[str, ...]
    rule: FieldRule  # the rule of the matching field of the service's own route
    metadata: dict[str, Any]
    manifest: ModelManifest
    score_rules: RequestRules | None = None  # /score's: seed, samples

    def config(self, max_batch_size: int) -> dict[str, Any]:
        """Triton's model configuration (JSON form)."""
        if self.graph is not None:
            return tm.model_config(self.manifest, self.graph, max_batch_size)
        return {
            "name": self.name,
            "platform": SCORE_PLATFORM,
            "max_batch_size": max_batch_size,
            "input": [{"name": self.input, "data_type": "TYPE_FP32", "dims": [self.width]}],
            "output": [{"name": o, "data_type": "TYPE_FP32", "dims": []} for o in self.outputs],
        }

    async def infer(
        self, service: VAEService, rows: np.ndarray, parameters: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        if self.graph is not None:
            return await service.run_graph(self.graph, rows)
        assert self.score_rules is not None
        seed = int_field(parameters, self.score_rules["seed"])
        samples = int_field(parameters, self.score_rules["samples"])
        assert samples is not None  # not nullable
        result = await service.score(rows, seed, samples)
        outputs = {"neg_elbo": result.neg_elbo, "iwae": result.iwae}
        calibration = self.manifest.calibration
        if calibration is not None:
            quantiles = np.asarray(calibration.quantiles)
            outputs["percentile"] = scoring.percentile_of(result.neg_elbo, quantiles)
        return {name: outputs[name].astype(np.float32) for name in self.outputs}

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


def oip_models(
    manifest: ModelManifest, rules: dict[tm.Graph, FieldRule], score_rules: RequestRules
) -> dict[str, OIPModel]:
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
            manifest=manifest,
        )
        models[model.name] = model
    outputs = ("neg_elbo", "iwae") + (("percentile",) if manifest.calibration else ())
    name = f"{manifest.name}-{SCORE}"
    models[name] = OIPModel(
        name=name,
        graph=None,
        input="images",
        width=manifest.image_size,
        outputs=outputs,
        rule=score_rules["images"],
        metadata={
            "name": name,
            "versions": [tm.VERSION],
            "platform": SCORE_PLATFORM,
            "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, manifest.image_size]}],
            "outputs": [{"name": o, "datatype": "FP32", "shape": [-1]} for o in outputs],
        },
        manifest=manifest,
        score_rules=score_rules,
    )
    return models
