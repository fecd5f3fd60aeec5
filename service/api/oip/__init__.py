"""The Open Inference Protocol v2 (KServe v2 / Triton's HTTP API) over the same runtime:
`codec` reads and writes inference bodies (JSON and the binary tensor data extension),
`models` presents each served VAE as its two graphs, `routes` are the thin HTTP layer."""
