"""The digital twin of AIGC data centres: scenarios, compute and energy co-simulation, utility accounting
and the gymnasium environment ``AIGCTwin-v0`` (``twin.env``); equations in docs/twin-model.md."""
