"""The HTTP server layer: uvicorn's httptools protocol with the limits it lacks."""
