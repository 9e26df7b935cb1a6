"""The HTTP layer: thin routers, one per area, over the engine."""
